import Foundation
import RerouteModel
import RerouteFast
import RerouteFixtures
import RerouteRouting
import RerouteVerify
import Testing

/// Counts, remapping and budgets against the numbers published by the methods.
@Suite struct ScheduleTests {
    /// Every "k per stage" of the Reroute release configs for N = 576 (SPEC.md §8.2).
    @Test func releaseCountsForLLaVA() throws {
        func counts(_ p: RoutingPolicy) throws -> [Int] { try p.schedule(layers: 32, originalN: 576, llmN: 576).counts }
        #expect(try counts(.fastVRelease(tier: .t192)) == [152])
        #expect(try counts(.fastVRelease(tier: .t128)) == [81])
        #expect(try counts(.fastVRelease(tier: .t64)) == [11])
        #expect(try counts(.rerouteFastV(tier: .t192)) == [152, 152, 152, 152])
        #expect(try counts(.pyramidDropRelease(tier: .t192)) == [343, 204, 122, 72])
        #expect(try counts(.pyramidDropRelease(tier: .t128)) == [263, 120, 54, 25])
        #expect(try counts(.pyramidDropRelease(tier: .t64)) == [160, 53, 18, 6])
        #expect(try counts(.reroutePDrop(tier: .t192)) == [259, 259, 129, 64])
        #expect(try counts(.reroutePDrop(tier: .t128)) == [152, 152, 76, 38])
        #expect(try counts(.reroutePDrop(tier: .t64)) == [80, 80, 40, 20])
        #expect(try counts(.pyramidDrop()) == [288, 144, 72])
        #expect(try counts(.fastV()) == [288])
        #expect(try counts(.nuwa(tier: .t64)) == [16])
    }

    @Test func countRules() {
        #expect(CountRule.floor.count(of: 576, ratio: 0.001) == 0)
        #expect(CountRule.floorAtLeastOne.count(of: 576, ratio: 0.001) == 1)
        #expect(CountRule.round.count(of: 5, ratio: 0.5) == 2)  // Python's round: 2.5 → 2, 3.5 → 4
        #expect(CountRule.round.count(of: 7, ratio: 0.5) == 4)
        #expect(CountRule.round.count(of: 9, ratio: 0.3) == 3)
        #expect(CountRule.ceil.count(of: 10, ratio: 0.31) == 4)
        #expect(CountRule.floorAtLeastOne.count(of: 10, ratio: 1.0) == 10)
    }

    @Test func remapReproducesTheReleaseQwenSchedules() throws {
        #expect(try LayerRemap.remap([2, 7, 15, 23], to: 28) == [2, 6, 13, 20])
        #expect(try LayerRemap.remap([3, 7, 15, 23], to: 28) == [3, 6, 13, 20])
        #expect(try LayerRemap.remap([3], to: 28) == [3])
        #expect(try LayerRemap.remap([2, 7, 15, 23], to: 8) == [1, 2, 4, 6])
        #expect(try LayerRemap.remap([8, 16, 24], to: 8) == [2, 4, 6])
        #expect(throws: RoutingError.self) { try LayerRemap.remap([2, 7, 15, 23], to: 4) }
    }

    @Test func visualCountsFollowStages() {
        let s = Schedule(decisionLayers: [2, 4], counts: [5, 3])
        #expect(s.visualCounts(n: 9, layers: 6) == [9, 9, 5, 5, 3, 3])
    }
}

@Suite struct BudgetTests {
    /// LLaVA-1.5-7B's language model: 32 layers, d = 4096, m = 11008, 32 heads.
    static let llava = ModelConfig(family: .llama, hiddenSize: 4096, layers: 32, heads: 32, kvHeads: 32,
                                   intermediateSize: 11008, rmsNormEps: 1e-5, ropeTheta: 10000, vocabSize: 32000,
                                   tieWordEmbeddings: false)
    static let grid = ImageGrid(rows: 24, cols: 24)

    func report(_ p: RoutingPolicy) throws -> BudgetReport {
        try BudgetCalculator.report(config: Self.llava, policy: p, textTokens: 36, grid: Self.grid)
    }

    /// PDrop paper (arXiv 2410.17247) Tables 1/5: image-only n, 3ndm MLP, in TFLOPs.
    @Test func reproducesPDropPaperTFLOPs() throws {
        func tflops(_ p: RoutingPolicy) throws -> Double { (try report(p).totalFlopsPDropPaper / 1e10).rounded() / 100 }
        #expect(try tflops(.dense) == 3.82)
        #expect(try tflops(.pyramidDrop()) == 1.78)
        #expect(try tflops(.fastV(k: 2, r: 0.5)) == 2.01)
        #expect(try report(.pyramidDrop()).averageVisualTokens == 270)
        #expect(try report(.fastV(k: 2, r: 0.5)).averageVisualTokens == 306)
    }

    @Test func rerouteOnFastVMatchesPerLayerAndPDropOnAverage() throws {
        for tier in Tier.allCases {
            let fastv = try report(.fastVRelease(tier: tier)), rr = try report(.rerouteFastV(tier: tier))
            #expect(fastv.layers == rr.layers)
            #expect(rr.matching == .perLayer(base: fastv.policy))
            let pdrop = try report(.pyramidDropRelease(tier: tier)), rp = try report(.reroutePDrop(tier: tier))
            #expect(rp.matching == .averageTokens(base: pdrop.policy))
            if tier != .t64 {  // the release's avg64 PDrop configs do not match (SPEC.md §8.12)
                #expect(abs(rp.averageVisualTokens - pdrop.averageVisualTokens) < 1)
                #expect(abs(rp.averageVisualTokens - Double(tier.rawValue)) < 1)
            }
        }
        #expect(try report(.fastVRelease(tier: .t192)).averageVisualTokens == 191.75)  // (3·576 + 29·152) / 32
        #expect(try report(.nuwa(tier: .t64)).averageVisualTokens == 64)  // (16·112 + 16·16) / 32
        #expect(try report(.rerouteNuwa(tier: .t64)).layers.map(\.visualTokens) == report(.nuwa(tier: .t64)).layers.map(\.visualTokens))
    }

    @Test func exactFlopsAndKV() throws {
        // A 1-layer toy: d = 2, m = 3, H = H_kv = 1, d_h = 2, 1 text + 2 visual tokens.
        let c = ModelConfig(family: .llama, hiddenSize: 2, layers: 1, heads: 1, kvHeads: 1, intermediateSize: 3,
                            rmsNormEps: 1e-6, ropeTheta: 10000, vocabSize: 4, tieWordEmbeddings: false)
        let r = try BudgetCalculator.report(config: c, policy: .dense, textTokens: 1, grid: ImageGrid(rows: 1, cols: 2),
                                            bytesPerElement: 4)
        // n = 3: projections 3·2·(2·2 + 2·2) = 48; causal attention: QKᵀ and AV each
        // d_h·(1+2+3) = 12; MLP 3·3·2·3 = 54; ×2 FLOPs.
        #expect(r.layers[0].flops == 2 * (48 + 12 + 12 + 54))
        #expect(r.layers[0].kvEntries == 3 && r.layers[0].kvBytes == 3 * 2 * 2 * 4)
        // LLaVA-1.5-7B: 2 · 32 heads · 128 · 2 bytes = 16 KiB of fp16 KV per token per layer.
        #expect(try report(.dense).layers[0].kvBytes == 612 * 16384)
    }
}

@Suite struct NuwaBudgetTests {
    /// On an odd grid, edge regions propose fewer tokens; the budget's K1 is what stage 1 keeps.
    @Test func budgetK1EqualsExecutedK1OnOddGrids() throws {
        let w = withProjector(tinyRandomWeights(layers: 8), dv: 6, seed: 5)
        for (rows, cols) in [(3, 3), (5, 7), (4, 6), (1, 5)] {
            let c = randomCase(for: w, seed: 11, grid: ImageGrid(rows: rows, cols: cols), visionDim: 6)
            for tier in Tier.allCases {
                let policy = RoutingPolicy.nuwa(tier: tier)
                let llm = try policy.visionStage!.apply(to: c)
                let report = try BudgetCalculator.report(config: w.config, policy: policy, textTokens: 5, grid: c.grid)
                #expect(report.llmVisualTokens == llm.visual.count, "\(rows)x\(cols) \(tier)")
            }
        }
    }
}

/// The budget calculator's scoring costs against the score requests a routed prefill
/// really makes: per decision, the keys, the query rows and the keys the decision layer
/// does not process itself, for every catalog policy.
@Suite struct ScoringCostTests {
    /// Forwards to a decoder and logs each score request and each layer's active count.
    struct Recording<D: LayerwiseDecoder>: LayerwiseDecoder {
        final class Log { var requests: [ScoreRequest] = []; var active: [Int] = [] }
        let base: D
        let log = Log()
        var config: ModelConfig { base.config }
        func begin(_ c: PromptCase, kvCapacity: [Int]?) throws -> D.State { try base.begin(c, kvCapacity: kvCapacity) }
        func run(layer: Int, plan: LayerPlan, state: inout D.State, reusing: D.ScoreReuse?) {
            log.active.append(plan.active.count)
            base.run(layer: layer, plan: plan, state: &state, reusing: reusing)
        }
        func attentionProbabilities(_ request: ScoreRequest, state: D.State) -> ScoreAnswer<D.ScoreReuse> {
            log.requests.append(request)
            return base.attentionProbabilities(request, state: state)
        }
        func hiddenStates(entering layer: Int, rows: [Int], state: D.State) -> [[Double]] {
            base.hiddenStates(entering: layer, rows: rows, state: state)
        }
        func rotatedKeys(layer: Int, rows: [Int], positions: PositionIDs, state: D.State) -> [[Double]] {
            base.rotatedKeys(layer: layer, rows: rows, positions: positions, state: state)
        }
        func finalNormed(_ rows: [[Double]]) -> [[Double]] { base.finalNormed(rows) }
    }

    @Test(arguments: PolicyCatalog.names.filter { $0 != "dense" })
    func calculatorMatchesTheRequests(policy name: String) throws {
        let policy = try #require(PolicyCatalog.named(name))
        // The recomputed M-RoPE rules run on an M-RoPE model and 3-D positions.
        let mrope = policy.positions.requiresMultimodal
        let config = ModelConfig(family: mrope ? .qwen2 : .llama, hiddenSize: 32, layers: 8, heads: 4, kvHeads: 2, intermediateSize: 48,
                                 rmsNormEps: 1e-5, ropeTheta: 10000, vocabSize: 50, tieWordEmbeddings: false,
                                 mropeSection: mrope ? [1, 1, 2] : nil)
        let weights = RandomModel.weights(config, visionDim: 8, seed: 3)
        // Features through the projector, so Nüwa's vision-side stage can run.
        let c = RandomCase.make(config: config, name: "costs", grid: ImageGrid(rows: 6, cols: 6), prefix: 5, suffix: 2,
                                visual: .features(width: 8), positions: mrope ? .multimodal : .contiguous, decodeSteps: 0, clsFeature: true, seed: 4)
        let decoder = Recording(base: FastDecoder(weights: weights))
        _ = try RoutedPrefill.run(decoder: decoder, case: c, policy: policy)
        let costs = try BudgetCalculator.scoringCosts(config: config, policy: policy, textTokens: 7, grid: c.grid)
        let requests = decoder.log.requests
        if policy.selection != nil {  // a selection rule reads hidden states, never attention
            #expect(requests.isEmpty, "\(requests.count) attention requests")
            #expect(costs.count == policy.decisionLayers.count && costs.allSatisfy { $0.keys == 0 && $0.flops > 0 }, "\(costs)")
            return
        }
        try #require(costs.count == requests.count, "\(costs.count) costs, \(requests.count) requests")
        for (cost, request) in zip(costs, requests) {
            #expect(cost.keys == request.keys.count && cost.queryRows == request.queryRows.count, "layer \(cost.layer): \(cost)")
            let own = request.layer == cost.layer && policy.positions == .original ? decoder.log.active[cost.layer] : 0
            #expect(cost.extraKeys == request.keys.count - own, "layer \(cost.layer): \(cost)")
        }
    }
}
