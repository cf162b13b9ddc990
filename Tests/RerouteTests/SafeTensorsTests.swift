import Foundation
import RerouteModel
import Testing

/// The safetensors reader accepts valid files exactly and refuses every malformed one
/// with a specific error that names the file and the tensor (SPEC.md §3).
@Suite struct SafeTensorsTests {
    func withFile(_ bytes: [UInt8], _ body: (String) throws -> Void) throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let path = dir.path("t.safetensors")
        try bytes.write(to: path)
        try body(path)
    }

    func error(for bytes: [UInt8]) throws -> InputError? {
        var result: InputError?
        try withFile(bytes) { path in result = inputError { _ = try SafeTensorsFile(path: path) } }
        return result
    }

    @Test func readsAllFloatDTypes() throws {
        var b = SafeTensorsBuilder()
        b.addF32("a", shape: [2, 2], [1, -2, 0.5, 3e-39])
        b.addRaw("h", dtype: "F16", shape: [3], bits: [0x3C00, 0x0001, 0xFC00])
        b.addRaw("bf", dtype: "BF16", shape: [2], bits: [0x3F80, 0xC040])
        try withFile(b.bytes()) { path in
            let f = try SafeTensorsFile(path: path)
            #expect(f.metadata == ["format": "pt"])
            #expect(try f.info("a").shape == [2, 2])
            #expect(try f.floats("a") == [1, -2, 0.5, 3e-39])
            #expect(try f.floats("h") == [1, 0x1p-24, -.infinity])
            #expect(try f.floats("bf") == [1, -3])
        }
    }

    @Test func refusesTooShortFile() throws {
        #expect(try error(for: [1, 2, 3])?.kind == .truncated)
    }

    @Test func refusesHeaderLongerThanFile() throws {
        let e = try error(for: SafeTensorsBuilder.file(header: "{}", data: [], headerLength: 50))
        #expect(e?.kind == .truncated)
    }

    @Test func refusesAbsurdHeaderLength() throws {
        let e = try error(for: SafeTensorsBuilder.file(header: "{}", data: [], headerLength: 1 << 40))
        #expect(e?.kind == .badHeader)
    }

    @Test func refusesBadJSON() throws {
        #expect(try error(for: SafeTensorsBuilder.file(header: "{\"a\": [", data: []))?.kind == .badJSON)
        #expect(try error(for: SafeTensorsBuilder.file(header: "[1, 2]", data: []))?.kind == .badJSON)
    }

    @Test func refusesUnknownDType() throws {
        let h = "{\"w\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}}"
        let e = try error(for: SafeTensorsBuilder.file(header: h, data: [0, 0, 0, 0]))
        #expect(e?.kind == .unsupportedDType && e?.object == "w")
    }

    @Test func refusesShapeThatDisagreesWithByteRange() throws {
        let h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}"
        let e = try error(for: SafeTensorsBuilder.file(header: h, data: [UInt8](repeating: 0, count: 8)))
        #expect(e?.kind == .badShape && e?.object == "w")
    }

    @Test func refusesRangeOutsideTheFile() throws {
        let h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}"
        let e = try error(for: SafeTensorsBuilder.file(header: h, data: [UInt8](repeating: 0, count: 8)))
        #expect(e?.kind == .outOfRange && e?.object == "w")
    }

    @Test func refusesOverlappingTensors() throws {
        let h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}"
        let e = try error(for: SafeTensorsBuilder.file(header: h, data: [UInt8](repeating: 0, count: 12)))
        #expect(e?.kind == .overlap && e?.object == "b")
    }

    @Test func refusesAbsurdElementCountBeforeAllocating() throws {
        // 10^15 float32 elements: refused from the header alone.
        let h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1000000,1000000000],\"data_offsets\":[0,4]}}"
        #expect(try error(for: SafeTensorsBuilder.file(header: h, data: [0, 0, 0, 0]))?.kind == .badShape)
        let overflow = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}"
        #expect(try error(for: SafeTensorsBuilder.file(header: overflow, data: [0, 0, 0, 0]))?.kind == .badShape)
    }

    @Test func refusesNegativeOrFractionalShapes() throws {
        for shape in ["[-1]", "[1.5]", "[\"2\"]"] {
            let h = "{\"w\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[0,4]}}"
            #expect(try error(for: SafeTensorsBuilder.file(header: h, data: [0, 0, 0, 0]))?.kind == .badShape, "\(shape)")
        }
    }

    @Test func refusesNonFloatTensorAsWeights() throws {
        let h = "{\"w\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}"
        try withFile(SafeTensorsBuilder.file(header: h, data: [1, 0, 0, 0])) { path in
            let f = try SafeTensorsFile(path: path)
            #expect(inputError { _ = try f.floats("w") }?.kind == .unsupportedDType)
            #expect(inputError { _ = try f.floats("nope") }?.kind == .missingTensor)
        }
    }

    @Test func missingFileIsReported() {
        let e = inputError { _ = try SafeTensorsFile(path: "/nonexistent/x.safetensors") }
        #expect(e?.kind == .fileNotFound && e?.file == "/nonexistent/x.safetensors")
    }

    /// The shipped checkpoint cut at many offsets: always a clean error, never a crash.
    /// A negative argument counts from the end (-1: all but the last byte).
    @Test(arguments: [0, 4, 7, 8, 9, 100, 1000, 5000, 20000, 400_000, -1000, -1])
    func truncatedShippedFileGivesAnError(cut: Int) throws {
        let original = try Data(contentsOf: Repo.model("tiny-llama").appendingPathComponent("model.safetensors"))
        let length = cut >= 0 ? cut : original.count + cut
        try #require(length < original.count)
        let e = try error(for: Array(original.prefix(length)))
        #expect(e != nil)
        #expect([.truncated, .badJSON, .outOfRange].contains(e!.kind), "\(e!)")
    }
}
