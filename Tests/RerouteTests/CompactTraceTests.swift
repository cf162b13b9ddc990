import Foundation
import RerouteModel
import RerouteRouting
import RerouteHDF5
import RerouteTrace
import RerouteVerify
import Testing

/// Compact traces (SPEC.md §9.1): hidden states of some sequence rows only, as the trained
/// model's goldens store them; read, written, compared and law-checked on the rows they hold.
@Suite struct CompactTraceTests {
    static let full: Trace = try! Goldens.record(.rerouteFastV(tier: .t192))
    static var rows: [Int] { [0, 7, full.sequenceLength - 1] }
    static let compact: Trace = full.keepingHiddenStates(ofRows: rows)

    @Test func keepsTheRowsItIsGivenAtEveryLayer() {
        let c = Self.compact, f = Self.full
        #expect(c.hiddenStateRows == Self.rows && c.storedHiddenRows == Self.rows)
        #expect(c.sequenceLength == f.sequenceLength && c.hiddenStates.count == f.config.layers + 1)
        #expect(c.hiddenStates.allSatisfy { $0.count == 3 })
        for l in 0...f.config.layers {
            for row in Self.rows { #expect(c.hiddenState(entering: l, row: row) == f.hiddenStates[l][row]) }
            #expect(c.hiddenState(entering: l, row: 1) == nil)
            #expect(f.hiddenState(entering: l, row: 1) == f.hiddenStates[l][1])
        }
        #expect(c.hiddenState(entering: f.config.layers + 1, row: 0) == nil)
    }

    @Test func roundTripsThroughAFile() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try Self.compact.write(to: dir.path("c.h5"))
        let r = try Trace.read(from: dir.path("c.h5"))
        #expect(r.hiddenStateRows == Self.rows && r.hiddenStates == Self.compact.hiddenStates)
        #expect(r.processed == Self.full.processed && r.decisions == Self.full.decisions && r.sequenceLength == Self.full.sequenceLength)
        let f = try HDF5File(readingFrom: dir.path("c.h5"))
        #expect(try f.shape("/prefill/hidden_states") == [Self.full.config.layers + 1, 3, Self.full.config.hiddenSize])
        #expect(try f.stringAttribute("compare", of: "/prefill/hidden_state_rows") == "exact")
        // A full trace has no row list.
        try Self.full.write(to: dir.path("f.h5"))
        #expect(!(try HDF5File(readingFrom: dir.path("f.h5"))).exists("/prefill/hidden_state_rows"))
    }

    @Test func comparesTheRowsBothSidesStore() throws {
        let v = compareTraces(expected: Self.compact, actual: Self.full, rules: .reference)
        #expect(v.passed, "\(v.failures.map(\.summary))")
        #expect(v.skipped.contains { $0.object == "/prefill/hidden_states (other rows)" && $0.summary.contains("\(Self.rows)") })
        // Both directions, and compact against compact.
        #expect(compareTraces(expected: Self.full, actual: Self.compact, rules: .reference).passed)
        #expect(compareTraces(expected: Self.compact, actual: Self.compact, rules: .reference).passed)
        // A stored row that differs is found at its layer.
        var bad = Self.full
        bad.hiddenStates[5][7][2] *= 1.001
        let found = compareTraces(expected: Self.compact, actual: bad, rules: .reference)
        #expect(!found.passed && found.firstDivergence == "/prefill/hidden_states[5]")
        // One that is not stored cannot be seen (only the full comparison finds it).
        var unseen = Self.full
        unseen.hiddenStates[5][2][2] *= 1.001
        #expect(compareTraces(expected: Self.compact, actual: unseen, rules: .reference).passed)
        #expect(!compareTraces(expected: Self.full, actual: unseen, rules: .reference).passed)
        // Disjoint rows: hidden states are skipped, not passed.
        let other = Self.full.keepingHiddenStates(ofRows: [1, 2])
        let disjoint = compareTraces(expected: Self.compact, actual: other, rules: .reference)
        #expect(disjoint.passed && disjoint.skipped.contains { $0.summary == "no sequence row is stored by both traces" })
    }

    @Test func lawsHoldOnTheStoredRowsAndStillSeeABrokenOne() throws {
        #expect(compareTraces(expected: Self.compact, actual: Self.compact, rules: .reference).findings
            .filter { $0.kind == .law }.allSatisfy { $0.status == .passed })
        // A deferred token of the first decision, stored, that moves inside its stage.
        let d = Self.full.decisions[0]
        let p = Self.full.input.prefixTokens.count
        let row = p + (Self.full.llmGridIndices?.firstIndex(of: d.deferred[0]) ?? d.deferred[0])
        var moved = Self.full.keepingHiddenStates(ofRows: [0, row])
        moved.hiddenStates[d.layer + 1][1][0] += 1
        let v = compareTraces(expected: Self.compact, actual: moved, rules: .reference)
        #expect(v.failures.contains { $0.object == "law:deferred-stale (actual)" }, "\(v.failures.map(\.object))")
        #expect(v.failures.contains { $0.object == "law:bypass-identity (actual)" }, "\(v.failures.map(\.object))")
    }

    @Test(arguments: [[2, 1, 0], [0, 7, 100_000], [0, 0, 5], [-1, 7, 9]])
    func badRowListsAreRefusedNamingTheDataset(rows: [Int]) throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        var bad = Self.compact
        bad.hiddenStateRows = rows  // the writer stores what it is given; the reader judges
        try bad.write(to: dir.path("c.h5"))
        var text = "read without an error"
        do { _ = try Trace.read(from: dir.path("c.h5")) } catch { text = "\(error)" }
        #expect(text.hasSuffix("/prefill/hidden_state_rows: bad value: must be strictly ascending sequence indices 0…\(Self.full.sequenceLength - 1), at least one"), "\(text)")
    }

    /// The shipped compact goldens of the trained model: listed with their hashes, compact,
    /// and readable without the model (its checkpoint is built on demand).
    @Test func trainedGoldensAreListedCompactAndComplete() throws {
        let dir = Repo.root.appendingPathComponent("golden/trained")
        let m = try GoldenManifest.load(from: dir)
        #expect(m.problems(in: dir).isEmpty)
        let expected = GoldenTraces.trained.flatMap { b in b.policies.map { GoldenTraces.relativePath(model: b.name, policy: $0.name) } }
        #expect(m.files.map(\.path).sorted() == expected.sorted())
        for e in m.files {
            let t = try Trace.read(from: dir.appendingPathComponent(e.path).path)
            #expect(t.hiddenStateRows == [0, t.sequenceLength - 1] && t.input.decodeSteps == 1 && t.stepLogits.count == 1, "\(e.path)")
            #expect(t.input.visual.count == 144 && t.input.grid == ImageGrid(rows: 12, cols: 12))
        }
    }

    @Test func aFolderWithoutAManifestIsNamed() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        #expect {
            _ = try GoldenManifest.load(from: dir.url)
        } throws: { "\($0)" == "\(dir.url.appendingPathComponent("MANIFEST.json").path): file not found (not a golden folder?)" }
    }

    @Test func regeneratingTheTrainedSetWithoutItsModelNamesTheBuilder() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        #expect {
            _ = try GoldenRegeneration.run(modelsRoot: dir.url, tracesRoot: dir.url.appendingPathComponent("t"), set: .trained,
                                           force: false, commit: "x")
        } throws: { "\($0)".contains("smollm2-135m-instruct") && "\($0)".contains("python3 tools/make_smollm2.py") }
    }
}
