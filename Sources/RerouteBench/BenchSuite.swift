import CBLAS
import Foundation
import RerouteFast
import RerouteFixtures
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteVerify

/// The benchmark suite of `reroute bench` (its sections are listed in the command's help):
/// every ratio measured side by side, A B A B, because the machine's speed drifts. Lines of
/// the report go to `out`, progress to `progress`.
public struct BenchSuite {
    public var repeats = 5
    /// Fast-decoder workers (nil: one per core).
    public var threads: Int?
    /// Layers of the LLaVA-shaped model.
    public var layers = 8
    public var policyRounds = 7
    public var quick = false
    public var deepPairs = true
    public var smallModel = "golden/models/tiny-llama"
    /// nil: the fast decoder's crossover for its path (`FastDecoder.packedRowCrossover`).
    public var packedRowLimit: Int?
    /// The fast decoder's vector path (default: `VectorISA.standard`).
    public var isa: VectorISA = .standard
    public var out: (String) -> Void
    public var progress: (String) -> Void

    public init(out: @escaping (String) -> Void, progress: @escaping (String) -> Void) {
        self.out = out
        self.progress = progress
    }

    public func run() throws {
        let reps = quick ? 2 : repeats
        let workers = threads ?? ProcessInfo.processInfo.activeProcessorCount
        out("reroute bench: \(ProcessInfo.processInfo.activeProcessorCount) cores, \(workers) decoder worker(s) over single-threaded OpenBLAS, core \(String(cString: openblas_get_corename()))")
        out("   vector paths: widest \(VectorISA.widest.rawValue), supported \(VectorISA.supported.map(\.rawValue).joined(separator: ", ")); the fast decoder runs \(isa.rawValue)")

        let c = ModelConfig(family: .llama, hiddenSize: 2048, layers: layers, heads: 16, kvHeads: 16, intermediateSize: 5632,
                            rmsNormEps: 1e-5, ropeTheta: 10000, vocabSize: 32000, tieWordEmbeddings: false)
        progress("generating the LLaVA-shaped model (\(layers) layers)…")
        let weights = RandomModel.weights(c, visionDim: 64, seed: 7)
        var bc = RandomCase.make(config: c, name: "bench", grid: ImageGrid(rows: 24, cols: 24), prefix: 35, suffix: 1, visual: .embeddings, decodeSteps: 17, seed: 8)
        // Features through a small projector so Nüwa's vision stage can run.
        var rng = SystemRandomNumberGenerator()
        bc.visual = .features(Matrix(rows: 576, cols: 64, values: (0..<(576 * 64)).map { _ in Float.random(in: -1...1, using: &rng) }))
        let s = bc.sequenceLength

        // 1. Machine (the roofline is measured again interleaved with the dense prefill in 3).
        let bandwidth = MachineProbes.memcpyBandwidth(repeats: reps)
        let readBandwidth = MachineProbes.readBandwidth(repeats: reps)
        out("\n1. machine")
        let (native, split) = (MachineProbes.sgemmRoofline(c, rows: s, repeats: reps, split: false, workers: workers),
                               MachineProbes.sgemmRoofline(c, rows: s, repeats: reps, split: true, workers: workers))
        out(String(format: "   sgemm at the model's projection shapes (n=%d): OpenBLAS with %d threads %.1f GFLOP/s, columns split over %d single-threaded calls %.1f GFLOP/s",
                     s, workers, native, workers, split))
        out(String(format: "   memcpy 256 MiB: %.1f GB/s (read + write); streaming read of 1 GiB: %.1f GB/s", bandwidth, readBandwidth))
        // The arithmetic peak: a register-only FMA loop on every core at once, per vector width.
        var peaks: [VectorISA: Double] = [:]
        for path in VectorISA.supported { peaks[path] = MachineProbes.fmaPeak(path, threads: workers, repeats: reps) }
        out("   FMA peak (register-only loop, \(workers) threads, best of \(reps) windows): " + VectorISA.allCases.map { path in
            peaks[path].map { String(format: "%@ %.1f GFLOP/s", path.rawValue, $0 / 1e9) } ?? "\(path.rawValue) not on this CPU"
        }.joined(separator: "; "))
        // No product can beat the arithmetic peak: if sgemm does, the peak loop did less work than
        // it counts (a compiler that folded part of it), and every "% of peak" below is wrong.
        if let widest = peaks[VectorISA.widest], max(native, split) * 1e9 > widest {
            out(String(format: "   WARNING: sgemm (%.1f GFLOP/s) beats the %@ FMA peak (%.1f GFLOP/s): the peak loop is not doing the work it counts",
                       max(native, split), VectorISA.widest.rawValue, widest / 1e9))
        }
        // The row counts routed layers run at (36 text tokens + a tier's kept tokens); A B A B.
        do {  // a scope, so the packed copy of the weights is freed before section 3 packs its own
            let blasOnly = FastDecoder(weights: weights, options: .init(recordHiddenStates: false, threads: threads, packedRowLimit: 0, isa: isa))
            let packedAll = FastDecoder(weights: weights, options: .init(recordHiddenStates: false, threads: threads, packedRowLimit: .max, isa: isa))
            if packedAll.usesPackedWeights {
                let limit = packedRowLimit ?? FastDecoder.packedRowCrossover(isa: packedAll.isa)
                out("   one layer's projections at few rows, GFLOP/s (medians of \(reps); OpenBLAS split over the workers / packed-weight kernel):")
                for rows in [47, 100, 128, 164, 228, 612] {
                    var a: [Double] = [], b: [Double] = []
                    for _ in 0..<reps {
                        a.append(blasOnly.projectionThroughput(rows: rows))
                        b.append(packedAll.projectionThroughput(rows: rows))
                    }
                    out(String(format: "     n=%3d: %6.1f / %6.1f  (packed / OpenBLAS %.2f)%@", rows, Statistics.median(a), Statistics.median(b), Statistics.median(b) / Statistics.median(a),
                                 rows <= limit ? "  ← packed used" : ""))
                }
            }
        }

        // 2. Fast vs reference on small models.
        out("\n2. fast vs reference, dense prefill (interleaved)")
        let tiny = try ModelWeights.load(directory: URL(fileURLWithPath: smallModel))
        let c512 = ModelConfig(family: .llama, hiddenSize: 512, layers: 2, heads: 8, kvHeads: 8, intermediateSize: 1408, rmsNormEps: 1e-5,
                               ropeTheta: 10000, vocabSize: 1000, tieWordEmbeddings: false)
        let small = RandomModel.weights(c512, seed: 11)
        let smallCases: [(String, ModelWeights, PromptCase)] = [
            ("tiny-llama (d=64, L=8, S=108)", tiny, GoldenTraces.traceCase(for: tiny, model: "tiny-llama")),
            ("small (d=512, L=2, S=612)", small, RandomCase.make(config: c512, name: "bench", grid: ImageGrid(rows: 24, cols: 24), prefix: 35, suffix: 1,
                                                                       visual: .embeddings, decodeSteps: 0, seed: 12)),
        ]
        for (label, w, sc) in smallCases {
            let ref = ReferenceDecoder(weights: w)
            let f = FastDecoder(weights: w, options: .init(recordHiddenStates: false, threads: threads, packedRowLimit: packedRowLimit, isa: isa))
            var tr: [Double] = [], tf: [Double] = []
            for _ in 0..<(quick ? 1 : 2) {
                tr.append(try PrefillTiming.seconds(ref, sc, .dense))
                tf.append(try PrefillTiming.seconds(f, sc, .dense))
            }
            let flops = try BudgetCalculator.report(config: w.config, policy: .dense, textTokens: sc.sequenceLength - sc.visual.count,
                                                    grid: sc.grid, bytesPerElement: 4).totalFlops
            // The ratio is bounded by (fast GFLOP/s) / (reference GFLOP/s), so both are printed.
            out(String(format: "   %@: reference %.1f ms (%.2f GFLOP/s), fast %.2f ms (%.1f GFLOP/s): fast is %.0fx faster", label,
                         Statistics.median(tr) * 1e3, flops / Statistics.median(tr) / 1e9, Statistics.median(tf) * 1e3, flops / Statistics.median(tf) / 1e9, Statistics.median(tr) / Statistics.median(tf)))
        }

        // 3. Dense prefill on the LLaVA-shaped model.
        let fast = FastDecoder(weights: weights, options: .init(recordHiddenStates: false, threads: threads, packedRowLimit: packedRowLimit, isa: isa))
        let denseFlops = try BudgetCalculator.report(config: c, policy: .dense, textTokens: 36, grid: bc.grid, bytesPerElement: 4).totalFlops
        let denseAllocations = try PrefillTiming.counted(fast, bc, .dense).allocations  // also the warm-up
        // The same prefill on every other path this CPU has, interleaved with it.
        let others = VectorISA.supported.filter { $0 != fast.isa }.map {
            FastDecoder(weights: weights, options: .init(recordHiddenStates: false, threads: threads, packedRowLimit: packedRowLimit, isa: $0))
        }
        var td: [Double] = [], fractions: [Double] = [], ofPeak: [Double] = [], peakNow: [Double] = []
        var versus = Array(repeating: [Double](), count: others.count)
        for _ in 0..<reps {
            // A B C A B C: roofline (the better of the two sgemm schemes), FMA peak of the widest
            // path, prefill, the prefill on the other paths, …
            let roof = max(MachineProbes.sgemmRoofline(c, rows: s, repeats: 1, split: false, workers: workers),
                           MachineProbes.sgemmRoofline(c, rows: s, repeats: 1, split: true, workers: workers))
            let peak = MachineProbes.fmaPeak(VectorISA.widest, threads: workers, repeats: 5)
            let t = try PrefillTiming.seconds(fast, bc, .dense)
            td.append(t)
            peakNow.append(peak)
            fractions.append(denseFlops / t / 1e9 / roof)
            ofPeak.append(denseFlops / t / peak)
            for (i, o) in others.enumerated() { versus[i].append(try PrefillTiming.seconds(o, bc, .dense) / t) }
        }
        let dense = Statistics.median(td)
        out("\n3. dense prefill, LLaVA-shaped (d=2048, H=16, m=5632, L=\(layers), S=\(s)), \(fast.isa.rawValue) path")
        out(String(format: "   %.1f ms, %.1f GFLOP (exact count), %.1f GFLOP/s = %.0f%% of the sgemm roofline and %.0f%% of the %@ FMA peak (%.1f GFLOP/s, each round's best of 5 windows) (medians of interleaved ratios)",
                     dense * 1e3, denseFlops / 1e9, denseFlops / dense / 1e9, 100 * Statistics.median(fractions), 100 * Statistics.median(ofPeak),
                     VectorISA.widest.rawValue, Statistics.median(peakNow) / 1e9))
        for (i, o) in others.enumerated() {
            out(String(format: "   the %@ path: time / %@ path %.3f (median of interleaved ratios)", o.isa.rawValue, fast.isa.rawValue, Statistics.median(versus[i])))
        }

        // 4. Policies, in rounds: each round runs dense, then each policy of the tier with its
        // Reroute variant right after its base, so every ratio is of runs seconds apart.
        out("\n4. policies (prefill time / dense time: median over \(quick ? 1 : policyRounds) rounds of adjacent runs; FLOPs ratio from the budget calculator)")
        out("   FLOPs ratio: the budget's layers; + scoring: also each decision's scoring work (BudgetCalculator.scoringCosts)")
        out("   " + pad("policy", 22) + pad("avg_T", 8) + pad("time ratio", 11) + pad("FLOPs ratio", 12) + pad("difference", 11)
              + pad("+ scoring", 10) + pad("difference", 11) + pad("allocations", 12)
              + "vs base: time (median of adjacent pairs; fastest run / fastest run), FLOPs + scoring")
        let tiers: [Tier] = quick ? [.t192] : [.t192, .t128, .t64]
        var allocationsByPolicy: [(String, Int)] = []
        for tier in tiers {
            let policies: [RoutingPolicy] = [.fastVRelease(tier: tier), .rerouteFastV(tier: tier), .pyramidDropRelease(tier: tier),
                                             .reroutePDrop(tier: tier), .nuwa(tier: tier), .rerouteNuwa(tier: tier)]
            var toDense = Array(repeating: [Double](), count: policies.count), toPrevious = toDense, seconds = toDense
            var allocations = Array(repeating: [Int](), count: policies.count)
            for _ in 0..<(quick ? 1 : policyRounds) {
                let a = try PrefillTiming.seconds(fast, bc, .dense)
                var previous = a
                for (i, p) in policies.enumerated() {
                    let (b, count, _) = try PrefillTiming.counted(fast, bc, p)
                    toDense[i].append(b / a)
                    toPrevious[i].append(b / previous)
                    seconds[i].append(b)
                    if let count { allocations[i].append(count) }
                    previous = b
                }
            }
            var withScoring: [Double] = []
            for (i, p) in policies.enumerated() {
                let budget = try BudgetCalculator.report(config: c, policy: p, textTokens: 36, grid: bc.grid, bytesPerElement: 4)
                let scoring = try BudgetCalculator.scoringCosts(config: c, policy: p, textTokens: 36, grid: bc.grid).map(\.flops).reduce(0, +)
                let flopsRatio = budget.totalFlops / denseFlops, ratio = Statistics.median(toDense[i])
                withScoring.append((budget.totalFlops + scoring) / denseFlops)
                // A Reroute variant follows its base in every round: the adjacent pair's ratio is drift-free.
                var versus = ""
                if i % 2 == 1 {
                    versus = String(format: "%.3f (fastest runs %.3f), %.3f x %@", Statistics.median(toPrevious[i]), seconds[i].min()! / seconds[i - 1].min()!,
                                    withScoring[i] / withScoring[i - 1], policies[i - 1].name)
                }
                let count = allocations[i].isEmpty ? "-" : String(Int(Statistics.median(allocations[i].map(Double.init))))
                if let n = Int(count) { allocationsByPolicy.append((p.name, n)) }
                out("   " + pad(p.name, 22) + pad(String(format: "%.1f", budget.averageVisualTokens), 8)
                      + pad(String(format: "%.3f", ratio), 11) + pad(String(format: "%.3f", flopsRatio), 12)
                      + pad(String(format: "%+.3f", ratio - flopsRatio), 11) + pad(String(format: "%.3f", withScoring[i]), 10)
                      + pad(String(format: "%+.3f", ratio - withScoring[i]), 11) + pad(count, 12) + versus)
            }
        }

        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        let peakBeforeDeep = usage.ru_maxrss / 1024

        // 4b. Reroute against its base at LLaVA's own depth: the scoring of each extra decision
        // weighs 4x less per layer on 32 layers than on 8, and with m/d and d_h as LLaVA's the
        // proportions of its work are LLaVA-1.5-7B's.
        if !quick && deepPairs { try deepPairsSection() }

        // 5. Decode, interleaved with the streaming-read bandwidth (A B A B).
        let steps = bc.decodeSteps
        let weightBytes = Double(c.layers * (2 * c.hiddenSize * c.queryWidth + 2 * c.hiddenSize * c.kvWidth + 3 * c.hiddenSize * c.intermediateSize)
                                 + c.vocabSize * c.hiddenSize) * 4
        // With packed weights, the same decode through OpenBLAS's sgemv (the decoder without
        // them) runs next to it, each from its own prefill of the case.
        let sgemvDecoder = fast.usesPackedWeights
            ? FastDecoder(weights: weights, options: .init(recordHiddenStates: false, threads: threads, packedRowLimit: 0, isa: isa)) : nil
        var tokenRates: [Double] = [], fractionsOfBandwidth: [Double] = [], sgemvRatios: [Double] = []
        func tokensPerSecond(_ decoder: FastDecoder) throws -> Double {
            var state = try RoutedPrefill.run(decoder: decoder, case: bc, policy: .dense).state
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = decoder.greedyDecode(&state, steps: steps)
            return Double(steps - 1) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        for _ in 0..<(quick ? 1 : 3) {
            let bandwidthNow = MachineProbes.readBandwidth(repeats: 1)
            let rate = try tokensPerSecond(fast)
            tokenRates.append(rate)
            fractionsOfBandwidth.append(weightBytes * rate / 1e9 / bandwidthNow)
            if let sgemvDecoder { sgemvRatios.append(try tokensPerSecond(sgemvDecoder) / rate) }
        }
        let tokensPerSecond = Statistics.median(tokenRates)
        out("\n5. greedy decode (dense cache, \(steps - 1) tokens; medians of \(tokenRates.count), each next to a streaming-read measurement)")
        out(String(format: "   %.1f tokens/s; %.0f MB of weights per token: %.1f GB/s = %.0f%% of the streaming-read bandwidth",
                     tokensPerSecond, weightBytes / 1e6, weightBytes * tokensPerSecond / 1e9, 100 * Statistics.median(fractionsOfBandwidth)))
        if !sgemvRatios.isEmpty {
            out(String(format: "   the layers' products by the packed gemv; through OpenBLAS's sgemv instead: %.3f of its tokens/s (median of ratios)",
                       Statistics.median(sgemvRatios)))
        }

        // 6. Memory.
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        let modelMiB = Int(weightBytes) / 1_048_576 + c.vocabSize * c.hiddenSize * 4 / 1_048_576
        out("\n6. peak resident memory, sections 1-4: \(peakBeforeDeep) MiB (the LLaVA-shaped model's f32 weights \(modelMiB) MiB, its layers packed again"
              + " for the few-row kernel); whole run: \(usage.ru_maxrss / 1024) MiB")
        if let dense = denseAllocations {
            out("   heap allocations per run (every thread and library; preparation and prefill): dense \(dense); policies \(allocationsByPolicy.map(\.1).min()!)–\(allocationsByPolicy.map(\.1).max()!) (column of table 4)")
        } else {
            out("   heap allocations: not counted (the counting allocator is not in effect on this platform)")
        }
    }

    /// Section 4b: Reroute / its base on a 32-layer model, adjacent pairs.
    public func deepPairsSection() throws {
        let c32 = ModelConfig(family: .llama, hiddenSize: 1024, layers: 32, heads: 8, kvHeads: 8, intermediateSize: 2816,
                              rmsNormEps: 1e-5, ropeTheta: 10000, vocabSize: 32000, tieWordEmbeddings: false)
        progress("generating the 32-layer model…")
        let deep = FastDecoder(weights: RandomModel.weights(c32, seed: 9),
                               options: .init(recordHiddenStates: false, threads: threads, packedRowLimit: packedRowLimit, isa: isa))
        let dc = RandomCase.make(config: c32, name: "bench", grid: ImageGrid(rows: 24, cols: 24), prefix: 35, suffix: 1, visual: .embeddings, decodeSteps: 0, seed: 10)
        let pairs: [(RoutingPolicy, RoutingPolicy)] = [Tier.t192, .t128, .t64].flatMap { t in
            [(RoutingPolicy.fastVRelease(tier: t), RoutingPolicy.rerouteFastV(tier: t)), (.pyramidDropRelease(tier: t), .reroutePDrop(tier: t))]
        }
        _ = try PrefillTiming.seconds(deep, dc, .dense)  // warm-up
        var ratios = Array(repeating: [Double](), count: pairs.count), fastest = Array(repeating: (Double.infinity, Double.infinity), count: pairs.count)
        for round in 0..<policyRounds {
            progress("4b: round \(round + 1) of \(policyRounds)")
            for (i, (base, reroute)) in pairs.enumerated() {
                // A B, then B A in the next round, so an order effect cancels in the median.
                var a = 0.0, b = 0.0
                if round % 2 == 0 {
                    a = try PrefillTiming.seconds(deep, dc, base)
                    b = try PrefillTiming.seconds(deep, dc, reroute)
                } else {
                    b = try PrefillTiming.seconds(deep, dc, reroute)
                    a = try PrefillTiming.seconds(deep, dc, base)
                }
                ratios[i].append(b / a)
                fastest[i] = (min(fastest[i].0, a), min(fastest[i].1, b))
            }
        }
        out("\n4b. Reroute / its base on a 32-layer model (d=1024, H=8, d_h=128, m=2816, S=612; the release schedules, not remapped;")
        out("    median over \(policyRounds) adjacent pairs, alternately A B and B A; FLOPs + scoring from the budget calculator)")
        for (i, (base, reroute)) in pairs.enumerated() {
            func cost(_ p: RoutingPolicy) throws -> Double {
                try BudgetCalculator.report(config: c32, policy: p, textTokens: 36, grid: dc.grid, bytesPerElement: 4).totalFlops
                    + BudgetCalculator.scoringCosts(config: c32, policy: p, textTokens: 36, grid: dc.grid).map(\.flops).reduce(0, +)
            }
            out(String(format: "   %@ / %@: time %.3f (pairs range %.3f–%.3f; fastest run / fastest run %.3f), FLOPs + scoring %.3f",
                         reroute.name, base.name, Statistics.median(ratios[i]), ratios[i].min()!, ratios[i].max()!, fastest[i].1 / fastest[i].0,
                         try cost(reroute) / cost(base)))
        }
    }
}
