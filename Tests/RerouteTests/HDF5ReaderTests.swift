import Foundation
import RerouteHDF5
import RerouteModel
import RerouteVerify
import Testing

/// The HDF5 layer reads h5py's files and turns every failure into a named error.
@Suite struct HDF5ReaderTests {
    let casePath = Repo.models.appendingPathComponent("tiny-qwen2/cases/features-12x12-contiguous.h5").path

    @Test func readsH5pyFile() throws {
        let f = try HDF5File(readingFrom: casePath)
        #expect(try f.stringAttribute("format") == "reroute.hf-reference")
        #expect(try f.intAttribute("format_version") == 1)
        #expect(try f.shape("/inputs/grid") == [2])
        #expect(try f.readInts("/inputs/grid").values == [12, 12])
        let logits = try f.readFloats("/float32/logits")
        #expect(logits.shape == [156, 256])
        let asDouble = try f.readDoubles("/float32/logits")
        #expect(asDouble.values == logits.values.map(Double.init))
        #expect(try f.elementKind("/inputs/positions") == .integer)
        #expect(try f.doubleAttribute("min_top2_margin", of: "/float64") > 1e-3)
    }

    @Test func missingObjectsAreNamed() throws {
        let f = try HDF5File(readingFrom: casePath)
        let e = #expect(throws: HDF5Error.self) { _ = try f.readFloats("/float32/nope") }
        #expect(e?.kind == .missing && e?.object == "/float32/nope" && e?.file == casePath)
        let a = #expect(throws: HDF5Error.self) { _ = try f.stringAttribute("nope") }
        #expect(a?.kind == .missing && a?.object == "/@nope")
    }

    @Test func wrongElementTypeIsRefused() throws {
        let f = try HDF5File(readingFrom: casePath)
        #expect((#expect(throws: HDF5Error.self) { _ = try f.readInts("/float32/logits") })?.kind == .wrongType)
        #expect((#expect(throws: HDF5Error.self) { _ = try f.readFloats("/inputs/grid") })?.kind == .wrongType)
    }

    @Test func notAnHDF5FileIsRefused() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try Array("hello".utf8).write(to: dir.path("x.h5"))
        #expect((#expect(throws: HDF5Error.self) { _ = try HDF5File(readingFrom: dir.path("x.h5")) })?.kind == .cannotOpen)
        #expect((#expect(throws: HDF5Error.self) { _ = try HDF5File(readingFrom: dir.path("missing.h5")) })?.kind == .cannotOpen)
    }

    /// A case file cut short: a clean error from open or from a read, never a crash.
    @Test(arguments: [100, 800, 2048, 4096, 50_000, 300_000, 700_000])
    func truncatedCaseFileGivesAnError(length: Int) throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: casePath)))
        try Array(bytes.prefix(length)).write(to: dir.path("cut.h5"))
        var failed = false
        do { _ = try HFReferenceCase.load(path: dir.path("cut.h5")) } catch is HDF5Error { failed = true } catch is InputError { failed = true }
        #expect(failed)
    }
}

/// The comparison gates and bounds on crafted pairs.
@Suite struct TensorComparisonTests {
    let tol = Tolerance(name: "t", relative: 1e-6, rowFloor: 1e-9, nmse: 1e-10, reason: "test")

    @Test func identicalPasses() {
        let r = compareRows("x", expected: [[1, -2, 0]], actual: [[1, -2, 0]], tolerance: tol)
        #expect(r.passed && r.worstRatio == 0 && r.nmse == 0)
    }

    @Test func gates() {
        #expect(compareRows("x", expected: [[1]], actual: [[1], [2]], tolerance: tol).gateFailure?.hasPrefix("shape") == true)
        #expect(compareRows("x", expected: [[1, 2]], actual: [[1]], tolerance: tol).gateFailure?.hasPrefix("shape") == true)
        #expect(compareRows("x", expected: [[.nan]], actual: [[.nan]], tolerance: tol).gateFailure?.hasPrefix("NaN") == true)
        #expect(compareRows("x", expected: [[.infinity]], actual: [[-.infinity]], tolerance: tol).gateFailure?.hasPrefix("Inf") == true)
        #expect(compareRows("x", expected: [[.infinity, 1]], actual: [[.infinity, 1]], tolerance: tol).passed)
    }

    @Test func boundIsSymmetricWithRowFloor() {
        // 1e-6 relative: 1 vs 1 + 0.9e-6 passes, 1 + 2e-6 fails.
        #expect(compareRows("x", expected: [[1]], actual: [[1 + 0.9e-6]], tolerance: tol).passed)
        let r = compareRows("x", expected: [[1, 5]], actual: [[1 + 2e-6, 5]], tolerance: tol)
        #expect(!r.passed && r.mismatchCount == 1 && r.mismatches[0].row == 0 && r.mismatches[0].column == 0)
        // A tiny element next to a large one is judged against the row scale (floor 1e-9 · 1000).
        #expect(compareRows("x", expected: [[1000, 1e-12]], actual: [[1000, 5e-7]], tolerance: tol).passed)
        #expect(!compareRows("x", expected: [[1000, 1e-12]], actual: [[1000, 5e-6]], tolerance: tol).passed)
        // Swapping expected and actual gives the same verdict.
        #expect(compareRows("x", expected: [[1 + 2e-6]], actual: [[1]], tolerance: tol).passed
                == compareRows("x", expected: [[1]], actual: [[1 + 2e-6]], tolerance: tol).passed)
    }

    @Test func nmseLimitApplies() {
        let loose = Tolerance(name: "t", relative: 1, rowFloor: 0, nmse: 1e-4, reason: "")
        #expect(!compareRows("x", expected: [[1, 1]], actual: [[1.1, 1.1]], tolerance: loose).passed)
    }

    @Test func reportsAtMostMaxReported() {
        let r = compareRows("x", expected: [[Double](repeating: 1, count: 20)], actual: [[Double](repeating: 2, count: 20)],
                            tolerance: tol, maxReported: 3)
        #expect(r.mismatchCount == 20 && r.mismatches.count == 3)
    }
}
