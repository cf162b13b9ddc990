import CRerouteAllocationCounter
import CRerouteKernels
import Foundation
import PropertyBased
import RerouteFast
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace
import RerouteVerify
import Testing

/// The fast decoder against the reference on random models and cases, for every policy
/// (SPEC.md §10.3). swift-property-based prints the failing seed and a `.fixedSeed` to replay.
@Suite struct FastDecoderDifferentialTests {
    /// A random model: MHA or GQA, with or without q/k/v bias, head dims that are not powers
    /// of two (6, 10, 12, 14; RoPE needs them even), 1 to 16 layers, and a third of the time
    /// M-RoPE with a random section; a random case with a random span, grid and (half the
    /// time) non-contiguous positions, or Qwen2-VL's 3-D positions on an M-RoPE model.
    static func world(_ seed: UInt64) -> (ModelWeights, PromptCase) {
        var rng = SplitMix64(seed: seed)
        let layers = 1 + Int(rng.next() % 16)
        let headDim = [6, 8, 10, 12, 14][Int(rng.next() % 5)]
        let kvHeads = 1 + Int(rng.next() % 2)
        let heads = kvHeads * (1 + Int(rng.next() % 3))
        let family: ModelFamily = rng.next() % 2 == 0 ? .qwen2 : .llama
        var c = ModelConfig(family: family, hiddenSize: 24 + 8 * Int(rng.next() % 3), layers: layers, heads: heads, kvHeads: kvHeads,
                            headDim: headDim, intermediateSize: 40 + Int(rng.next() % 30), rmsNormEps: 1e-6, ropeTheta: 10000,
                            vocabSize: 64, tieWordEmbeddings: rng.next() % 2 == 0)
        let mrope = rng.next() % 3 == 0
        if mrope {
            let half = headDim / 2, t = Int(rng.next() % UInt64(half + 1)), h = Int(rng.next() % UInt64(half - t + 1))
            c.mropeSection = [t, h, half - t - h]
            c.ropeTheta = 100  // so the few image positions turn every chunk visibly
        }
        var w = tinyRandomWeights(family: family, layers: layers, hidden: c.hiddenSize, heads: heads, kvHeads: kvHeads,
                                  intermediate: c.intermediateSize, vocab: 64, seed: seed)
        // tinyRandomWeights derives head dim from hidden / heads: rebuild attention at this head dim.
        var r = SplitMix64(seed: seed &+ 99)
        func mat(_ rows: Int, _ cols: Int) -> Matrix { Matrix(rows: rows, cols: cols, values: (0..<(rows * cols)).map { _ in r.nextSigned() / Float(cols).squareRoot() }) }
        w.config = c
        for l in 0..<layers {
            w.layers[l].q = mat(c.queryWidth, c.hiddenSize)
            w.layers[l].k = mat(c.kvWidth, c.hiddenSize)
            w.layers[l].v = mat(c.kvWidth, c.hiddenSize)
            w.layers[l].o = mat(c.hiddenSize, c.queryWidth)
            w.layers[l].qBias = c.attentionBias ? (0..<c.queryWidth).map { _ in 0.1 * r.nextSigned() } : nil
            w.layers[l].kBias = c.attentionBias ? (0..<c.kvWidth).map { _ in 0.1 * r.nextSigned() } : nil
            w.layers[l].vBias = c.attentionBias ? (0..<c.kvWidth).map { _ in 0.1 * r.nextSigned() } : nil
        }
        if c.tieWordEmbeddings { w.lmHead = w.embedding }
        w = withProjector(w, dv: 7, seed: seed &+ 7)
        let grid = ImageGrid(rows: 2 + Int(rng.next() % 4), cols: 2 + Int(rng.next() % 4))
        var cs = randomCase(for: w, seed: seed &+ 3, prefix: 1 + Int(rng.next() % 4), grid: grid, suffix: 1 + Int(rng.next() % 3),
                            visionDim: 7, gapped: rng.next() % 2 == 0)
        if mrope { cs.positions = .multimodal(prefix: cs.prefixTokens.count, grid: grid, suffix: cs.suffixTokens.count) }
        return (w, cs)
    }

    /// A catalog policy made executable on `layers` layers: when its 32-layer schedule does
    /// not remap, its decisions are spread over 1 ..< layers instead (dropping what does not fit).
    static func adapt(_ p: RoutingPolicy, layers: Int, mrope: Bool = false) -> RoutingPolicy? {
        if mrope, p.positions == .reindexed { return nil }  // re-indexing is 1-D only (SPEC.md §4)
        if (try? p.schedule(layers: layers, originalN: 16, llmN: 16)) != nil { return p }
        let count = min(p.decisionLayers.count, layers - 1)
        guard count > 0 else { return nil }
        var q = p
        q.referenceDepth = layers
        q.decisionLayers = (0..<count).map { 1 + $0 * (layers - 1) / count }
        q.keepRatios = Array(p.keepRatios.prefix(count))
        return (try? q.validate()) != nil ? q : nil
    }

    @Test func fastAgreesWithReferenceForEveryPolicy() async {
        await propertyCheck(count: 10, input: Gen.int(in: 0...Int(Int32.max))) { seed in
            let (w, c) = Self.world(UInt64(seed))
            let reference = ReferenceDecoder(weights: w), fast = FastDecoder(weights: w, options: FastDecoderOptions(threads: 1))
            let rules = ComparisonRules.fastVsReference(w.config, maxPosition: c.positions.maxPosition)
            for policy in PolicyCatalog.all.compactMap({ Self.adapt($0, layers: w.config.layers, mrope: c.positions.isMultimodal) }) {
                let expected = try TraceRecorder.record(decoder: reference, model: "random", case: c, policy: policy, seed: seed)
                let actual = try TraceRecorder.record(decoder: fast, model: "random", case: c, policy: policy, seed: seed)
                let report = try judge(expected: expected, actual: actual, rules: rules) { forced in
                    try TraceRecorder.record(decoder: fast, model: "random", case: c, policy: policy, seed: seed, forcedKept: forced)
                }
                #expect(report.passed, "\(policy.name) on \(w.config.layers) layers: \(report.render())")
            }
        }
    }

    @Test func bitwiseReproducibleWithFixedThreads() throws {
        // The first random world deep enough for the 32-layer schedule to remap (≥ 8 layers).
        let (w, c) = (UInt64(1)...).lazy.map(Self.world).first { $0.0.config.layers >= 8 }!
        for threads in [1, 2] {
            let fast = FastDecoder(weights: w, options: FastDecoderOptions(threads: threads))
            let a = try TraceRecorder.record(decoder: fast, model: "r", case: c, policy: .rerouteFastV(tier: .t128), seed: 0)
            let b = try TraceRecorder.record(decoder: fast, model: "r", case: c, policy: .rerouteFastV(tier: .t128), seed: 0)
            #expect(a.hiddenStates.flatMap { $0.flatMap { $0.map(\.bitPattern) } } == b.hiddenStates.flatMap { $0.flatMap { $0.map(\.bitPattern) } })
            #expect(a.lastLogits.map(\.bitPattern) == b.lastLogits.map(\.bitPattern) && a.decisions == b.decisions)
            #expect(a.stepLogits.flatMap { $0.map(\.bitPattern) } == b.stepLogits.flatMap { $0.map(\.bitPattern) })
        }
    }

    /// The KV cache is allocated once, at the size the budget calculator gives.
    @Test func kvCacheBytesEqualTheBudget() throws {
        let w = try ModelWeights.load(directory: Repo.model("tiny-qwen2"))
        var c = GoldenTraces.traceCase(for: w, model: "tiny-qwen2")
        for steps in [0, 1, 4] {
            c.decodeSteps = steps
            for policy in [RoutingPolicy.dense, .pyramidDrop(), .rerouteNuwa(tier: .t64), .reroutePDrop(tier: .t192)] {
                let (state, _) = try RoutedPrefill.run(decoder: FastDecoder(weights: w), case: c, policy: policy)
                let budget = try BudgetCalculator.report(config: w.config, policy: policy,
                                                         textTokens: c.prefixTokens.count + c.suffixTokens.count, grid: c.grid,
                                                         bytesPerElement: 4)
                let decodeSlots = max(0, steps - 1) * w.config.layers * 2 * w.config.kvWidth * 4
                #expect(state.kvAllocatedBytes == budget.totalKVBytes + decodeSlots, "\(policy.name), \(steps) steps")
            }
        }
    }
}

/// The packed-weight kernel (`CRerouteKernels`) against a Double product, on shapes that cut
/// every block edge: rows around the 6-row tile and the 132-row block, outputs around the
/// 16-column panel, inputs around the 256-long k block.
@Suite struct PackedKernelTests {
    @Test(.enabled(if: reroute_packed_gemm_supported() != 0, "needs AVX2 and FMA"),
          arguments: [(3, 20, 0), (1, 1, 1), (5, 15, 7), (6, 16, 256), (7, 17, 257), (13, 40, 600), (128, 33, 255), (133, 48, 513), (270, 20, 64)])
    func matchesDoubleProduct(rows: Int, out: Int, inner: Int) {
        var rng = SplitMix64(seed: UInt64(rows * 1_000_003 + out * 1009 + inner))
        func random() -> Float { Float(Double(rng.next() % 2_000_001) / 1_000_000 - 1) }
        let x = (0..<(rows * inner)).map { _ in random() }, w = (0..<(out * inner)).map { _ in random() }
        var packed = [Float](repeating: .nan, count: reroute_packed_count(Int32(out), Int32(inner)))
        reroute_pack_weights(w, Int32(out), Int32(inner), &packed)
        let panels = (out + 15) / 16
        var workspace = [Float](repeating: .nan, count: Int(REROUTE_PACK_MC) * Int(REROUTE_PACK_KC))
        // All panels at once, and one panel per call (as a split over workers would).
        var whole = [Float](repeating: .nan, count: rows * out), split = whole
        reroute_packed_gemm(Int32(rows), Int32(out), Int32(inner), x, packed, &whole, 0, Int32(panels), &workspace)
        for p in 0..<panels { reroute_packed_gemm(Int32(rows), Int32(out), Int32(inner), x, packed, &split, Int32(p), Int32(p + 1), &workspace) }
        #expect(whole.allSatisfy { $0.isFinite }, "an output element was not written")
        #expect(whole.map(\.bitPattern) == split.map(\.bitPattern), "the result depends on the panel split")
        var worst = 0.0
        for i in 0..<rows {
            for o in 0..<out {
                var exact = 0.0, magnitude = 0.0
                for k in 0..<inner {
                    exact += Double(x[i * inner + k]) * Double(w[o * inner + k])
                    magnitude += abs(Double(x[i * inner + k]) * Double(w[o * inner + k]))
                }
                // Float accumulation: |error| ≤ inner · 2^-24 · Σ|x w| (a loose, standard bound).
                worst = max(worst, abs(Double(whole[i * out + o]) - exact) / (Double(inner) * 0x1p-24 * magnitude + 1e-30))
            }
        }
        #expect(worst <= 1, "error \(worst) × the bound")
    }

    /// Packed and OpenBLAS-only runs of the fast decoder agree within the decoder tolerance,
    /// and the packed path is taken (the runs are not bitwise equal).
    @Test(.enabled(if: reroute_packed_gemm_supported() != 0, "needs AVX2 and FMA"))
    func packedAndOpenBLASRunsAgree() throws {
        let w = try ModelWeights.load(directory: Repo.model("tiny-qwen2"))
        let c = GoldenTraces.traceCase(for: w, model: "tiny-qwen2")
        let runs = try [128, 0].map { limit in
            try TraceRecorder.record(decoder: FastDecoder(weights: w, options: .init(packedRowLimit: limit)), model: "tiny-qwen2", case: c,
                                     policy: .rerouteFastV(tier: .t128), seed: 0)
        }
        let diff = compareTraces(expected: runs[1], actual: runs[0], rules: .fastVsReference(w.config))
        #expect(diff.passed, "\(diff.render())")
        #expect(runs[0].lastLogits.map(\.bitPattern) != runs[1].lastLogits.map(\.bitPattern))
    }
}

/// Buffers are allocated once per run (in `begin`), never per token: with the thread's own
/// allocation counter (the forwarding allocator linked into the tests and `reroute`), a
/// layer, `begin` and the outputs allocate the same number of times at 45 and at 180 tokens.
@Suite struct FastDecoderAllocationTests {
    struct Counts: Equatable, CustomStringConvertible {
        var begin = 0, layers: [Int] = [], outputs = 0
        var description: String { "begin \(begin), layers \(layers), outputs \(outputs)" }
    }

    static func count(_ w: ModelWeights, grid: Int) throws -> Counts {
        let c = RandomModel.promptCase(w.config, grid: ImageGrid(rows: grid, cols: grid), prefix: 35, suffix: 1, decodeSteps: 0, seed: 7)
        // One worker: the whole run is on this thread, so its counter sees every allocation.
        let fast = FastDecoder(weights: w, options: .init(recordHiddenStates: false, threads: 1))
        let plan = ExecutionPlan.dense(layers: w.config.layers, case: c)
        var counts = Counts()
        reroute_thread_allocations_start()
        var state = try fast.begin(c, kvCapacity: nil)
        counts.begin = reroute_thread_allocations_stop()
        for l in 0..<w.config.layers {
            reroute_thread_allocations_start()
            fast.run(layer: l, plan: plan.layers[l], state: &state)
            counts.layers.append(reroute_thread_allocations_stop())
        }
        reroute_thread_allocations_start()
        _ = fast.prefillOutputs(state).lastLogits
        counts.outputs = reroute_thread_allocations_stop()
        return counts
    }

    @Test func allocationsDoNotGrowWithTokens() throws {
        let w = try ModelWeights.load(directory: Repo.model("tiny-llama"))
        _ = try Self.count(w, grid: 2)  // first-use caches of the runtime and OpenBLAS
        let small = try Self.count(w, grid: 3), large = try Self.count(w, grid: 12)
        #expect(small.layers.allSatisfy { $0 > 0 }, "the counting allocator is not in effect: \(small)")
        #expect(small == large, "45 tokens: \(small); 180 tokens: \(large)")
    }
}

/// Real-size checkpoints: bf16 matrices stay in the mapped file and are widened tile by tile.
@Suite struct MappedWeightsTests {
    @Test func mappedBF16RunsMatchFloat32Runs() throws {
        let dir = Repo.model("tiny-llama")  // stored in bf16
        let mapped = try ModelWeights.load(directory: dir, storage: .mappedBF16)
        let f32 = try ModelWeights.load(directory: dir)
        #expect(mapped.layers.allSatisfy { $0.q.isMapped && $0.down.isMapped && $0.q.values.isEmpty } && mapped.embedding.isMapped)
        #expect(mapped.projector.map { !$0.linear1.isMapped } == true)  // small tensors are widened
        #expect(!f32.layers[0].q.isMapped)
        let c = GoldenTraces.traceCase(for: f32, model: "tiny-llama")
        for policy in [RoutingPolicy.dense, .rerouteFastV(tier: .t192)] {
            let a = try TraceRecorder.record(decoder: FastDecoder(weights: f32), model: "tiny-llama", case: c, policy: policy, seed: 0)
            let b = try TraceRecorder.record(decoder: FastDecoder(weights: mapped), model: "tiny-llama", case: c, policy: policy, seed: 0)
            // Widening is exact, so only the tiling of the products differs: within the fast tolerance.
            let report = compareTraces(expected: a, actual: b, rules: .fastVsReference(f32.config))
            #expect(report.passed, "\(policy.name): \(report.render())")
            #expect(a.decisions.map(\.kept) == b.decisions.map(\.kept) && a.decodeTokens == b.decodeTokens)
        }
    }
}
