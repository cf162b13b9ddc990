import Crypto
import Foundation
import RerouteModel

/// SHA-256 of a file's bytes, lowercase hex.
public func sha256Hex(ofFile path: String) throws -> String {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}

/// `golden/traces/MANIFEST.json`: every golden file with its SHA-256, the generator commit
/// and the seed (SPEC.md §9.4).
public struct GoldenManifest: Codable, Sendable, Equatable {
    public struct Entry: Codable, Sendable, Equatable {
        public var path: String
        public var sha256: String
        public var model: String
        public var policy: String
        public var `case`: String
    }

    public var schema = "reroute.golden-manifest"
    public var version = 1
    public var generator = "reroute golden regenerate"
    public var generatorCommit: String
    public var seed: Int
    public var traceSchemaVersion: Int
    public var files: [Entry]

    enum CodingKeys: String, CodingKey {
        case schema, version, generator, seed, files
        case generatorCommit = "generator_commit"
        case traceSchemaVersion = "trace_schema_version"
    }

    public static let fileName = "MANIFEST.json"

    public static func load(from dir: URL) throws -> GoldenManifest {
        let url = dir.appendingPathComponent(fileName)
        guard let k = FilePaths.kind(url.path) else { throw VerifyError.manifest(url.path, "file not found (not a golden folder?)") }
        if k != "a regular file" { throw VerifyError.manifest(url.path, "is \(k), not a regular file") }
        let data = try FilePaths.readSmall(url.path, maxBytes: 64 << 20, what: "a golden manifest")
        do { return try JSONDecoder().decode(GoldenManifest.self, from: data) } catch {
            throw VerifyError.manifest(url.path, "not a valid manifest: \(error)")
        }
    }

    public func write(to dir: URL) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try enc.encode(self)
        data.append(0x0A)
        try data.write(to: dir.appendingPathComponent(Self.fileName), options: .atomic)
    }

    /// Problems between the manifest and the folder: a listed file missing or with another
    /// hash, an `.h5` file not listed. Empty when they agree.
    public func problems(in dir: URL) -> [String] {
        var out: [String] = []
        for e in files {
            let p = dir.appendingPathComponent(e.path).path
            guard FileManager.default.fileExists(atPath: p) else { out.append("\(e.path): listed in the manifest but missing"); continue }
            guard let h = try? sha256Hex(ofFile: p) else { out.append("\(e.path): unreadable"); continue }
            if h != e.sha256 { out.append("\(e.path): SHA-256 \(h) but the manifest says \(e.sha256)") }
        }
        let listed = Set(files.map(\.path))
        if let walker = FileManager.default.enumerator(atPath: dir.path) {
            for case let rel as String in walker where rel.hasSuffix(".h5") && !listed.contains(rel) {
                out.append("\(rel): not listed in the manifest")
            }
        }
        return out
    }
}

/// Errors of the verification layer (exit code 2 in the CLI).
public enum VerifyError: Error, CustomStringConvertible, Equatable {
    case manifest(String, String)
    case refused(String)
    case missingModel(String, String)

    public var description: String {
        switch self {
        case .manifest(let f, let why): "\(f): \(why)"
        case .refused(let why): why
        case .missingModel(let trace, let model): "\(trace): model '\(model)' not found under the models folder"
        }
    }
}
