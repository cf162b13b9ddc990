import Foundation
import RerouteFixtures
import RerouteModel
import RerouteVerify

/// Paths of the repository, found from this file.
enum Repo {
    static let root: URL = {
        // Tests/RerouteTests/Support/TestSupport.swift → the repository root.
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url
    }()
    static let models = root.appendingPathComponent("golden/models")
    static func model(_ name: String) -> URL { models.appendingPathComponent(name) }

    /// Every shipped case file as "model/cases/case.h5" (stable, readable test arguments).
    static let caseFiles: [String] = {
        ((try? GoldenStore.models(in: models)) ?? []).flatMap { m in
            m.casePaths.map { "\(m.name)/cases/\(URL(fileURLWithPath: $0).lastPathComponent)" }
        }
    }()
}

/// A fresh temporary folder, removed by the caller with `cleanup()`.
struct TempDir {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("reroute-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    func cleanup() { try? FileManager.default.removeItem(at: url) }
}

/// Builds safetensors files byte by byte, so tests can also build broken ones.
struct SafeTensorsBuilder {
    struct Entry { var name: String; var dtype: String; var shape: [Int]; var bytes: [UInt8] }
    var entries: [Entry] = []

    mutating func addF32(_ name: String, shape: [Int], _ values: [Float]) {
        entries.append(Entry(name: name, dtype: "F32", shape: shape,
                             bytes: values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }))
    }

    mutating func addRaw(_ name: String, dtype: String, shape: [Int], bits: [UInt16]) {
        entries.append(Entry(name: name, dtype: dtype, shape: shape, bytes: bits.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }))
    }

    /// Header JSON (entries laid out back to back in order) and data bytes.
    func parts() -> (header: String, data: [UInt8]) {
        var offset = 0
        var items: [String] = []
        var data: [UInt8] = []
        for e in entries {
            items.append("\"\(e.name)\":{\"dtype\":\"\(e.dtype)\",\"shape\":\(e.shape),\"data_offsets\":[\(offset),\(offset + e.bytes.count)]}")
            offset += e.bytes.count
            data += e.bytes
        }
        return ("{\"__metadata__\":{\"format\":\"pt\"}," + items.joined(separator: ",") + "}", data)
    }

    static func file(header: String, data: [UInt8], headerLength: UInt64? = nil) -> [UInt8] {
        let h = Array(header.utf8)
        return withUnsafeBytes(of: (headerLength ?? UInt64(h.count)).littleEndian, Array.init) + h + data
    }

    func bytes() -> [UInt8] {
        let (h, d) = parts()
        return Self.file(header: h, data: d)
    }
}

extension Array where Element == UInt8 {
    func write(to path: String) throws { try Data(self).write(to: URL(fileURLWithPath: path)) }
}

/// Runs `body` and returns the `InputError` it throws (nil if it throws none or another).
func inputError(_ body: () throws -> Void) -> InputError? {
    do { try body() } catch let e as InputError { return e } catch { return nil }
    return nil
}

/// A tiny random model (fixed seed) for structural tests that need no file.
func tinyRandomWeights(family: ModelFamily = .llama, layers: Int = 2, hidden: Int = 16, heads: Int = 4, kvHeads: Int = 2,
                       intermediate: Int = 24, vocab: Int = 32, seed: UInt64 = 1) -> ModelWeights {
    RandomModel.weights(ModelConfig(family: family, hiddenSize: hidden, layers: layers, heads: heads, kvHeads: kvHeads,
                                    intermediateSize: intermediate, rmsNormEps: 1e-6, ropeTheta: 10000, vocabSize: vocab,
                                    tieWordEmbeddings: false), seed: seed)
}
