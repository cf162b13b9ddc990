import CHDF5
import Foundation
import RerouteConformance
import RerouteFast
import RerouteFixtures
import RerouteHDF5
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace
import RerouteVerify
import Testing

enum Goldens {
    static let traces = Repo.root.appendingPathComponent("golden/traces")
    static let manifest = try? GoldenManifest.load(from: traces)
    static let files: [String] = manifest?.files.map(\.path) ?? []
    static let decoders: [String: ReferenceDecoder] = {
        var d: [String: ReferenceDecoder] = [:]
        for m in ["tiny-llama", "tiny-qwen2", "tiny-qwen2-vl"] {
            if let w = try? ModelWeights.load(directory: Repo.model(m)) { d[m] = ReferenceDecoder(weights: w) }
        }
        return d
    }()

    /// A fresh reference trace of `policy` on the tiny LLaMA's golden case.
    static func record(_ policy: RoutingPolicy, model: String = "tiny-llama", forced: [Int: [Int]] = [:]) throws -> Trace {
        let d = try #require(decoders[model])
        return try TraceRecorder.record(decoder: d, model: model, case: GoldenTraces.goldenCase(for: policy, weights: d.weights, model: model),
                                        policy: policy, seed: 1, forcedKept: forced)
    }
}

/// Every shipped golden trace is reproduced by the reference decoder (one test per file).
@Suite struct GoldenTraceTests {
    @Test func manifestListsEveryFileWithItsHash() throws {
        let m = try #require(Goldens.manifest)
        #expect(m.problems(in: Goldens.traces).isEmpty)
        // Both 1-D models carry every policy but embedding-level DART's, EVS's and CDPruner's
        // two, and the one with attention biases neither DART's two nor VisionZip's two; the M-RoPE
        // model all but the 1-D-only ones (PDrop's two, DivPrune's two, VisionZip's two).
        let reindexed = GoldenTraces.policies.filter { $0.positions == .reindexed }.count
        let mropeOnly = GoldenTraces.policies.filter { $0.selection == .dartEmbed }.count
        let dart = GoldenTraces.policies.filter { $0.selection == .dart }.count
        let evs = GoldenTraces.policies.filter { $0.selection == .evs }.count
        let cdpruner = GoldenTraces.policies.filter { $0.selection == .cdPruner }.count
        let visionZip = GoldenTraces.policies.filter { $0.visionZip != nil }.count  // tiny-llama only
        #expect(reindexed == 4 && mropeOnly == 2 && dart == 2 && evs == 2 && cdpruner == 2 && visionZip == 2)
        #expect(m.files.count == 3 * GoldenTraces.policies.count - reindexed - 2 * mropeOnly - dart - 2 * evs - 2 * cdpruner - 2 * visionZip)
        #expect(m.files.filter { $0.policy.hasPrefix("evs-") }.map(\.case) == ["trace-video-4x3x4-mrope", "trace-video-4x3x4-mrope"])
        #expect(m.files.filter { $0.policy.hasPrefix("dart-1") || $0.policy.hasPrefix("dart-6") }.map(\.model).sorted()
            == ["tiny-llama", "tiny-llama", "tiny-qwen2-vl", "tiny-qwen2-vl"])
        #expect(Set(m.files.map(\.model)) == ["tiny-llama", "tiny-qwen2", "tiny-qwen2-vl"])
        #expect(m.seed == GoldenTraces.seed && m.traceSchemaVersion == Trace.schemaVersion)
        #expect(!m.generatorCommit.isEmpty)
    }

    @Test func goldenFolderStaysSmall() throws {
        var total = 0
        for case let rel as String in FileManager.default.enumerator(atPath: Repo.root.appendingPathComponent("golden").path)! {
            let attrs = try FileManager.default.attributesOfItem(atPath: Repo.root.appendingPathComponent("golden/\(rel)").path)
            total += (attrs[.size] as? Int) ?? 0
        }
        #expect(total < 21_000_000, "golden/ is \(total) bytes")
    }

    @Test func manifestDetectsATamperedGolden() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let copy = dir.url.appendingPathComponent("traces")
        try FileManager.default.copyItem(at: Goldens.traces, to: copy)
        let victim = copy.appendingPathComponent("tiny-llama/dense.h5")
        var bytes = [UInt8](try Data(contentsOf: victim))
        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: victim.path)
        try Array("x".utf8).write(to: copy.appendingPathComponent("tiny-llama/extra.h5").path)
        let problems = try GoldenManifest.load(from: copy).problems(in: copy)
        #expect(problems.contains { $0.hasPrefix("tiny-llama/dense.h5: SHA-256") })
        #expect(problems.contains { $0.hasPrefix("tiny-llama/extra.h5: not listed") })
    }

    @Test(arguments: Goldens.files)
    func goldenIsReproduced(file: String) throws {
        let golden = try Trace.read(from: Goldens.traces.appendingPathComponent(file).path)
        let decoder = try #require(Goldens.decoders[golden.provenance.model])
        let check = try TraceCheck.run(decoder: decoder, golden: golden, file: file, rules: .reference)
        #expect(check.passed, "\(check.verdict.render())")
        #expect(check.mode == "free")
        // The golden itself obeys the budget it declares.
        #expect(golden.processed.map(\.count) == golden.budget.layers.map { $0.textTokens + $0.visualTokens })
        #expect(golden.kvLength == golden.budget.layers.map(\.kvEntries))
    }
}

/// Writing and reading traces, and the schema's error handling.
@Suite struct TraceIOTests {
    @Test func roundTripIsExact() throws {
        let t = try Goldens.record(.rerouteNuwa(tier: .t192))
        let dir = try TempDir()
        defer { dir.cleanup() }
        try t.write(to: dir.path("t.h5"))
        let r = try Trace.read(from: dir.path("t.h5"))
        #expect(r.hiddenStates == t.hiddenStates && r.lastLogits == t.lastLogits && r.stepLogits == t.stepLogits)
        #expect(r.decisions == t.decisions && r.processed == t.processed && r.layerPositions == t.layerPositions)
        #expect(r.decodePositions == t.decodePositions && r.kvLength == t.kvLength && r.kvLengthAfterDecode == t.kvLengthAfterDecode)
        #expect(r.policy == t.policy && r.config == t.config && r.input == t.input && r.llmGridIndices == t.llmGridIndices)
        #expect(r.budget == t.budget && r.provenance == t.provenance && r.decodeTokens == t.decodeTokens)
        #expect(compareTraces(expected: t, actual: r, rules: .reference).passed)
        // Every dataset says how it is compared.
        let f = try HDF5File(readingFrom: dir.path("t.h5"))
        for p in ["/prefill/hidden_states", "/prefill/processed", "/prefill/decisions/00/kept", "/decode/tokens", "/inputs/positions"] {
            #expect(["float", "exact", "set", "bitwise"].contains(try f.stringAttribute("compare", of: p)), "\(p)")
        }
    }

    /// No decode steps: no tokens and no step logits, on both decoders, and the trace reads back
    /// (found by tools/torch_trace.py: the logits row of the prefill used to be kept).
    @Test func zeroDecodeStepsGiveNoStepLogits() throws {
        let m = ConformanceModel.standard[0]
        let w = RandomModel.weights(m.config, visionDim: m.visionDim, seed: m.seed)
        var c = ConformanceCases.random(for: m, seed: 5)
        c.decodeSteps = 0
        let dir = try TempDir()
        defer { dir.cleanup() }
        for (i, t) in [try TraceRecorder.record(decoder: ReferenceDecoder(weights: w), model: m.name, case: c, policy: .fastV(), seed: 5),
                       try TraceRecorder.record(decoder: FastDecoder(weights: w), model: m.name, case: c, policy: .fastV(), seed: 5)].enumerated() {
            #expect(t.decodeTokens.isEmpty && t.stepLogits.isEmpty)
            #expect(t.kvLengthAfterDecode == t.kvLength)
            try t.write(to: dir.path("t\(i).h5"))
            #expect(try Trace.read(from: dir.path("t\(i).h5")).stepLogits.isEmpty)
        }
    }

    /// Traces read and written from many threads at once give the same bytes as serial ones
    /// (every HDF5 call is serialized by the module's lock, whether or not libhdf5 was built
    /// thread-safe; this machine's is, so this checks the wrapper, not the lock's necessity).
    @Test func concurrentReadsAndWritesAreSafe() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let files = Array(Goldens.files.prefix(8))
        let expected = try files.map { try Data(contentsOf: Goldens.traces.appendingPathComponent($0)) }
        final class Failures: @unchecked Sendable { var list: [String] = []; let lock = NSLock() }
        let failures = Failures()
        let root = dir.url
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            let file = files[i % files.count]
            do {
                let t = try Trace.read(from: Goldens.traces.appendingPathComponent(file).path)
                let out = root.appendingPathComponent("t\(i).h5").path
                try t.write(to: out)
                if try Data(contentsOf: URL(fileURLWithPath: out)) != expected[i % files.count] {
                    failures.lock.lock(); failures.list.append("\(file): rewritten bytes differ"); failures.lock.unlock()
                }
            } catch {
                failures.lock.lock(); failures.list.append("\(file): \(error)"); failures.lock.unlock()
            }
        }
        #expect(failures.list.isEmpty, "\(failures.list)")
    }

    @Test func writesAreAtomicAndNeverOverwriteByDefault() throws {
        let t = try Goldens.record(.dense)
        let dir = try TempDir()
        defer { dir.cleanup() }
        try t.write(to: dir.path("t.h5"))
        let before = try Data(contentsOf: dir.url.appendingPathComponent("t.h5"))
        #expect(throws: HDF5Error.self) { try t.write(to: dir.path("t.h5")) }
        #expect(try Data(contentsOf: dir.url.appendingPathComponent("t.h5")) == before)
        try t.write(to: dir.path("t.h5"), overwrite: true)
        // No temporary files are left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path) == ["t.h5"])
    }

    @Test func h5dumpReadsTraces() throws {
        let h5dump = ["/usr/bin/h5dump", "/usr/local/bin/h5dump"].first { FileManager.default.isExecutableFile(atPath: $0) }
        try #require(h5dump != nil, "h5dump (hdf5-tools) is installed by tools/bootstrap.sh")
        let o = try Subprocess.run(["-A", Goldens.traces.appendingPathComponent("tiny-qwen2/reroute-pdrop-64.h5").path],
                                   executable: URL(fileURLWithPath: h5dump!), deadline: 60)
        #expect(o.status == 0)
        #expect(o.out.contains("reroute.trace") && o.out.contains("\"compare\""))
    }

    // MARK: malformed files

    /// A valid trace file, edited in place with the C API.
    func editedTrace(_ edit: (hid_t) -> Void) throws -> (TempDir, String) {
        let dir = try TempDir()
        let path = dir.path("t.h5")
        try Goldens.record(.fastV()).write(to: path)
        let fid = H5Fopen(path, chdf5_acc_rdwr(), chdf5_p_default())
        edit(fid)
        H5Fclose(fid)
        return (dir, path)
    }

    func readError(_ path: String) -> String? {
        do { _ = try Trace.read(from: path); return nil } catch { return "\(error)" }
    }

    @Test func wrongVersionIsRefused() throws {
        let (dir, path) = try editedTrace { fid in
            H5Adelete(fid, "schema_version")
            let space = H5Screate(H5S_SCALAR)
            let a = H5Acreate2(fid, "schema_version", chdf5_t_std_i64le(), space, chdf5_p_default(), chdf5_p_default())
            var v: Int64 = 99
            H5Awrite(a, chdf5_t_native_int64(), &v)
            H5Aclose(a)
            H5Sclose(space)
        }
        defer { dir.cleanup() }
        let e = try #require(readError(path))
        #expect(e.contains("/@schema_version") && e.contains("99") && e.contains(path))
    }

    /// A producer that knows only its run leaves `/budget` out; the reader computes it from
    /// the config and the processed sets, and for the shipped goldens (whose runs follow their
    /// schedules) that is the budget the suite wrote.
    @Test(arguments: ["tiny-llama/reroute-fastv-64.h5", "tiny-qwen2/reroute-nuwa-64.h5", "tiny-qwen2-vl/pdrop-release-64.h5", "tiny-llama/dense.h5"])
    func aTraceWithoutBudgetGetsTheBudgetOfItsProcessedSets(file: String) throws {
        let golden = Goldens.traces.appendingPathComponent(file).path
        let dir = try TempDir()
        defer { dir.cleanup() }
        let path = dir.path("t.h5")
        try FileManager.default.copyItem(atPath: golden, toPath: path)
        let fid = H5Fopen(path, chdf5_acc_rdwr(), chdf5_p_default())
        #expect(H5Ldelete(fid, "/budget", chdf5_p_default()) >= 0)
        H5Fclose(fid)
        let expected = try Trace.read(from: golden), t = try Trace.read(from: path)
        #expect(!expected.budgetComputed && t.budgetComputed)
        #expect(t.budget == expected.budget)
    }

    @Test func missingDatasetIsNamed() throws {
        let (dir, path) = try editedTrace { fid in H5Ldelete(fid, "/prefill/kv_length", chdf5_p_default()) }
        defer { dir.cleanup() }
        let e = try #require(readError(path))
        #expect(e.contains("/prefill/kv_length") && e.contains("missing"))
    }

    @Test func wrongShapeIsNamed() throws {
        let (dir, path) = try editedTrace { fid in
            H5Ldelete(fid, "/prefill/kv_length", chdf5_p_default())
            var dims: [hsize_t] = [3]
            let space = H5Screate_simple(1, &dims, nil)
            let ds = H5Dcreate2(fid, "/prefill/kv_length", chdf5_t_std_i64le(), space, chdf5_p_default(), chdf5_p_default(), chdf5_p_default())
            var v: [Int64] = [1, 2, 3]
            H5Dwrite(ds, chdf5_t_native_int64(), chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), &v)
            H5Dclose(ds)
            H5Sclose(space)
        }
        defer { dir.cleanup() }
        let e = try #require(readError(path))
        #expect(e.contains("/prefill/kv_length") && e.contains("shape [3]"))
    }

    @Test func nanIsRefused() throws {
        var t = try Goldens.record(.dense)
        t.hiddenStates[3][5][7] = .nan
        let dir = try TempDir()
        defer { dir.cleanup() }
        try t.write(to: dir.path("t.h5"))
        let e = try #require(readError(dir.path("t.h5")))
        #expect(e.contains("/prefill/hidden_states") && e.contains("NaN"))
    }

    @Test(arguments: [100, 2000, 30_000, 120_000, -1])
    func truncatedTraceGivesAnError(cut: Int) throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let bytes = [UInt8](try Data(contentsOf: Goldens.traces.appendingPathComponent("tiny-llama/reroute-fastv-192.h5")))
        try Array(bytes.prefix(cut >= 0 ? cut : bytes.count + cut)).write(to: dir.path("cut.h5"))
        #expect(readError(dir.path("cut.h5")) != nil)
    }
}

/// The comparison library on crafted pairs: each failure kind is detected, a route flip is
/// accepted only within ε (one finding for kept and deferred), what depends on an accepted
/// flip is skipped or replayed, and the presets follow the traces' precision.
@Suite struct TraceDiffTests {
    static let base: Trace = try! Goldens.record(.rerouteFastV(tier: .t192))

    func diff(_ edit: (inout Trace) -> Void, rules: ComparisonRules = .reference) -> Verdict {
        var t = Self.base
        edit(&t)
        return compareTraces(expected: Self.base, actual: t, rules: rules)
    }

    @Test func identicalTracesPass() {
        let r = diff { _ in }
        #expect(r.passed && r.firstDivergence == nil && r.accepted.isEmpty && r.skipped.isEmpty && r.mode == .free)
        // The trace laws ran on both sides.
        let laws = TraceLaws.applicable(to: Self.base.policy, capabilities: AdapterCapabilities(keepsTopKOfScores: false, scoresAreAttention: true),
                                        mode: .free)
        #expect(!laws.contains(.topKTieBreak) && laws.contains(.keptIsProcessed))
        #expect(r.findings.filter { $0.kind == .law }.count == 2 * laws.count)
    }

    @Test func hiddenStatePerturbationIsFoundAtItsLayerWithThePassingTolerance() throws {
        // Token 2 is text: processed by every layer, so only the comparison (no law) can see it.
        let r = diff { $0.hiddenStates[4][2][3] *= 1.001 }
        #expect(!r.passed && r.firstDivergence == "/prefill/hidden_states[4]")
        let item = r.failures[0]
        #expect(item.details.first?.hasPrefix("[sequence index 2, column 3]") == true, "\(item.details)")
        let m = try #require(item.tensor)
        #expect(m.mismatched == 1 && m.total == Self.base.sequenceLength * Self.base.config.hiddenSize)
        // The tolerance that would have passed does pass, and a little less does not.
        #expect(item.summary.contains("would pass with row floor"))
        let x = Self.base.hiddenStates[4][2][3]
        #expect(m.maxAbsDifference == abs(Double(x * 1.001) - Double(x)))
        var rules = ComparisonRules.reference
        rules.tensors.rowFloor = m.passingRowFloor * 1.0001
        rules.tensors.nmse = m.passingNMSE * 1.0001
        #expect(diff({ $0.hiddenStates[4][2][3] *= 1.001 }, rules: rules).passed)
        rules.tensors.rowFloor = m.passingRowFloor * 0.99
        #expect(!diff({ $0.hiddenStates[4][2][3] *= 1.001 }, rules: rules).passed)
        #expect(r.render().contains("first divergence: /prefill/hidden_states[4]"))
    }

    @Test func policyDifferencesNameTheField() {
        let r = diff { $0.policy.keepRatios[2] = 0.5 }
        #expect(r.firstDivergence == "/@policy")
        let summary = r.failures.first?.summary ?? ""
        #expect(summary.hasPrefix("keepRatios: expected [0.2644,0.2644,0.2644,0.2644], actual [0.2644,0.2644,0.5,0.2644]"), "\(summary)")
        #expect(diff { $0.config.rmsNormEps = 1e-4 }.failures.first?.summary.hasPrefix("rmsNormEps:") == true)
    }

    @Test func nanAndInfAreGated() {
        #expect(diff { $0.lastLogits[5] = .nan }.failures.first?.summary.hasPrefix("NaN") == true)
        #expect(diff { $0.lastLogits[5] = -.infinity }.failures.first?.summary.hasPrefix("Inf") == true)
    }

    @Test func discreteDataIsExact() {
        #expect(diff { $0.decodeTokens[1] += 1 }.firstDivergence == "/decode/tokens")
        #expect(diff { $0.kvLength[2] += 1 }.firstDivergence == "/prefill/kv_length[2]")
        #expect(diff { $0.layerPositions[3] = PositionIDs($0.layerPositions[3].linear.map { $0 + 1 }) }.firstDivergence == "/prefill/positions[3]")
        #expect(diff { $0.decodePositions[0] += 1 }.firstDivergence == "/prefill/decode_positions[0]")
        #expect(diff { $0.budget.layers[1].visualTokens += 1 }.firstDivergence == "/budget/visual_tokens")
    }

    /// The weakest kept and the strongest deferred token at the first decision, and their score gap.
    static func cut(_ t: Trace) -> (weakest: Int, strongest: Int, gap: Double) {
        let d = t.decisions[0]
        let score = Dictionary(uniqueKeysWithValues: zip(d.candidates, d.scores))
        let weakest = d.kept.min { score[$0]! < score[$1]! }!
        let strongest = d.deferred.max { score[$0]! < score[$1]! }!
        return (weakest, strongest, (score[weakest]! - score[strongest]!) / d.scores.max()!)
    }

    /// A real run whose first decision went the other way at the cut (routes forced), as an
    /// implementation that broke the near-tie differently would record it.
    static let flipped: Trace = {
        let (weakest, strongest, _) = cut(base)
        let kept = (base.decisions[0].kept.filter { $0 != weakest } + [strongest]).sorted()
        var forced = base.forcedRoutes
        forced[base.decisions[0].layer] = kept
        // Later decisions decide freely again.
        for d in base.decisions.dropFirst() { forced[d.layer] = nil }
        return try! Goldens.record(.rerouteFastV(tier: .t192), forced: forced)
    }()

    @Test func aTieFlipWithinEpsilonIsOneAcceptedFindingAndStopsTheComparison() throws {
        let gap = Self.cut(Self.base).gap
        var rules = ComparisonRules.reference
        rules.tieEpsilon = gap * 1.01
        let v = compareTraces(expected: Self.base, actual: Self.flipped, rules: rules)
        #expect(v.passed && v.mode == .stopped, "\(v.render())")
        // One finding for the decision, covering kept and deferred.
        #expect(v.acceptedRoutes.count == 1 && v.acceptedRoutes[0].object == "/prefill/decisions/00/{kept,deferred}")
        let route = try #require(v.acceptedRoutes[0].route)
        #expect(route.acceptance == "tie-flip" && route.onlyExpected == [Self.cut(Self.base).weakest]
                && route.onlyActual == [Self.cut(Self.base).strongest] && route.indexSpace == "visual grid cell")
        #expect(!v.findings.contains { $0.object.hasSuffix("/kept") || $0.object.hasSuffix("/deferred") })
        // What depends on the flip is skipped, with the reason; counts are still compared.
        #expect(v.skipped.contains { $0.object.hasPrefix("/prefill/{processed") && $0.summary.contains("decisions/00") })
        #expect(v.findings.contains { $0.object == "/prefill/kv_length[7]" && $0.status == .passed })
        #expect(!v.findings.contains { $0.object.hasPrefix("/prefill/hidden_states[") && $0.status != .skipped && $0.object != "/prefill/hidden_states[1]"
            && $0.object != "/prefill/hidden_states[2]" && $0.object != "/prefill/hidden_states[3]" })
        // Just below the gap it is a divergence, named at the decision.
        rules.tieEpsilon = gap * 0.99
        let strict = compareTraces(expected: Self.base, actual: Self.flipped, rules: rules)
        #expect(!strict.passed && strict.firstDivergence == "/prefill/decisions/00/{kept,deferred}" && strict.mode == .free)
        #expect(strict.failures[0].summary.contains("≥ ε"))
    }

    @Test func routeSlackAcceptsChoicesInTheOthersTopKPlusM() throws {
        var rules = ComparisonRules.reference
        rules.routeSlack = 1
        let v = compareTraces(expected: Self.base, actual: Self.flipped, rules: rules)
        #expect(v.passed && v.acceptedRoutes.first?.route?.acceptance == "route-slack", "\(v.render())")
        rules.routeSlack = 0
        #expect(!compareTraces(expected: Self.base, actual: Self.flipped, rules: rules).passed)
    }

    @Test func aRouteTamperedWithoutItsLayersBreaksTheKeptIsProcessedLaw() {
        let (weakest, strongest, gap) = Self.cut(Self.base)
        var rules = ComparisonRules.reference
        rules.tieEpsilon = gap * 2
        let v = diff({ t in
            var d = t.decisions[0]
            d.kept = (d.kept.filter { $0 != weakest } + [strongest]).sorted()
            d.deferred = (d.deferred.filter { $0 != strongest } + [weakest]).sorted()
            t.decisions[0] = d
        }, rules: rules)
        #expect(v.acceptedRoutes.count == 1)
        #expect(!v.passed && v.failures.map(\.object).contains("law:kept-is-processed (actual)"), "\(v.render())")
    }

    /// The flip replayed: the actual side re-run with the expected routes forced is compared in
    /// full, and the verdict keeps the accepted flip.
    @Test func lockstepReplayComparesEverythingAfterTheFlip() throws {
        let gap = Self.cut(Self.base).gap
        var rules = ComparisonRules.reference
        rules.tieEpsilon = gap * 1.5
        let check = try TraceCheck.run(decoder: Goldens.decoders["tiny-llama"]!, golden: Self.flipped, file: "crafted", rules: rules)
        #expect(check.mode == "lockstep" && check.passed, "\(check.verdict.render())")
        #expect(check.verdict.acceptedRoutes.count == 1 && check.verdict.skipped.isEmpty)
        #expect(check.verdict.findings.contains { $0.object == "/prefill/hidden_states[8]" && $0.status == .passed })
        rules.tieEpsilon = gap * 0.5
        let strict = try TraceCheck.run(decoder: Goldens.decoders["tiny-llama"]!, golden: Self.flipped, file: "crafted", rules: rules)
        #expect(!strict.passed && strict.mode == "free")
    }

    /// A greedy token may differ only where the expected top two logits are within the tolerance.
    @Test func greedyTokenFlipOnlyAtANearTie() throws {
        var near = Self.base
        let step = 1
        var logits = near.stepLogits[step]
        let top = logits.indices.max { logits[$0] < logits[$1] }!
        let second = logits.indices.filter { $0 != top }.max { logits[$0] < logits[$1] }!
        logits[second] = logits[top] - 1e-9 * abs(logits[top])  // a near-tie in the expected logits
        near.stepLogits[step] = logits
        var actual = near
        actual.decodeTokens[step] = second
        var rules = ComparisonRules.fastVsReference(near.config)
        let v = compareTraces(expected: near, actual: actual, rules: rules)
        #expect(v.passed && v.accepted.contains { $0.object == "/decode/tokens" }, "\(v.render())")
        rules.tensors.rowFloor = 0
        #expect(!compareTraces(expected: near, actual: actual, rules: rules).passed)
        var far = Self.base
        far.decodeTokens[step] += 1
        #expect(compareTraces(expected: Self.base, actual: far, rules: .fastVsReference(near.config)).firstDivergence == "/decode/tokens")
    }

    @Test func presetsFollowTheRecordedPrecision() {
        var fast = Self.base
        fast.provenance.decoder = "fast"
        #expect(ComparisonRules.automatic(expected: Self.base, actual: Self.base).name == "reference")
        #expect(ComparisonRules.automatic(expected: Self.base, actual: fast).name == "fp32")
        var torch = Self.base
        torch.provenance.decoder = "torch"
        torch.provenance.dtype = "bfloat16"
        let bf16 = ComparisonRules.automatic(expected: Self.base, actual: torch)
        #expect(bf16.name == "bf16" && bf16.reason.contains("/@dtype = bfloat16"))
        torch.provenance.dtype = nil
        let unknown = ComparisonRules.automatic(expected: Self.base, actual: torch)
        #expect(unknown.name == "fp32" && unknown.reason.contains("not recorded"))
        // The floors grow with the unit roundoff and are derived, not copied.
        let c = Self.base.config
        let f32 = ComparisonRules.preset(.fp32, config: c, maxPosition: 100), h = ComparisonRules.preset(.fp16, config: c, maxPosition: 100)
        let b = ComparisonRules.preset(.bf16, config: c, maxPosition: 100)
        let k = Double(max(c.hiddenSize, c.intermediateSize)), l = Double(c.layers)
        #expect(abs(f32.tensors.rowFloor - (8 * l.squareRoot() * (k.squareRoot() + 1) + 100) * 0x1p-24) < 1e-15)
        #expect(f32.tensors.rowFloor < h.tensors.rowFloor && h.tensors.rowFloor < b.tensors.rowFloor)
        #expect(b.tieEpsilon == 2 * b.tensors.rowFloor && b.tensors.nmse == b.tensors.rowFloor * b.tensors.rowFloor)
    }

    @Test func routesOnlyIgnoresTensorsButNotRoutes() {
        var rules = ComparisonRules.reference
        rules.routesOnly = true
        let v = diff({ $0.hiddenStates[4][2][3] *= 2; $0.lastLogits[0] += 1 }, rules: rules)
        #expect(v.passed && v.skipped.contains { $0.object == "/prefill/hidden_states" }, "\(v.render())")
        #expect(!diff({ $0.kvLength[2] += 1 }, rules: rules).passed)
        #expect(!compareTraces(expected: Self.base, actual: Self.flipped, rules: rules).passed)
    }

    @Test func jsonReportIsVersionedSnakeCaseWithNumbers() throws {
        func object(_ v: Verdict) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(try v.json().utf8)) as! [String: Any]
        }
        let failed = try object(diff { $0.hiddenStates[4][2][3] *= 1.001 })
        #expect(failed["schema"] as? String == "reroute.diff" && failed["schema_version"] as? Int == Verdict.schemaVersion)
        #expect(failed["passed"] as? Bool == false && failed["first_divergence"] as? String == "/prefill/hidden_states[4]")
        let findings = failed["findings"] as! [[String: Any]]
        let bad = findings.first { $0["object"] as? String == "/prefill/hidden_states[4]" }!
        let good = findings.first { $0["object"] as? String == "/prefill/hidden_states[3]" }!
        #expect(Set(bad.keys) == Set(good.keys))
        let metrics = bad["tensor"] as! [String: Any], goodMetrics = good["tensor"] as! [String: Any]
        #expect(Set(metrics.keys) == Set(goodMetrics.keys))
        #expect(metrics["mismatched"] as? Int == 1 && metrics["nmse"] is Double && metrics["passing_row_floor"] is Double)
        #expect(metrics["max_abs_difference"] is Double && metrics["max_rel_difference"] is Double)
        let passed = try object(diff { _ in })
        #expect(passed["passed"] as? Bool == true && passed["first_divergence"] is NSNull)
        #expect(Set(passed.keys) == Set(failed.keys))
    }
}

/// The verify job is library API: plan, run and report without a subprocess.
@Suite struct VerifyJobTests {
    @Test func verifyJobRunsInProcessAndItsOutputDoesNotDependOnJobs() throws {
        let one = try VerifyJob.run(VerifyOptions(modelsRoot: Repo.models, traces: nil, jobs: 1))
        let two = try VerifyJob.run(VerifyOptions(modelsRoot: Repo.models, traces: nil, jobs: 2))
        #expect(one.passed && one.transformers.count == Repo.caseFiles.count && one.traceChecks.isEmpty)
        #expect(one.transformers.map(\.file) == two.transformers.map(\.file))
        #expect(one.transformers.map { $0.tensors.map(\.nmse) } == two.transformers.map { $0.tensors.map(\.nmse) })
        let json = try JSONSerialization.jsonObject(with: Data(try one.json().utf8)) as! [String: Any]
        #expect(json["schema"] as? String == "reroute.verify" && json["checks"] as? Int == one.checkCount && json["passed"] as? Bool == true)
    }

    @Test func aMissingModelsFolderIsAnInputError() {
        #expect(throws: (any Error).self) { try VerifyJob.run(VerifyOptions(modelsRoot: URL(fileURLWithPath: "/nonexistent"), traces: nil)) }
    }
}
