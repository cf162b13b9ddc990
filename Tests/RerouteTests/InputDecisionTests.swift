import Foundation
import RerouteConformance
import RerouteFast
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace
import RerouteVerify
import Testing

/// Decisions at the LLM input (layer 0) and selection rules (SPEC.md §8.7, §8.15).
@Suite struct InputDecisionTests {
    /// A selection input over hand-made hidden states (no attention).
    static func input(_ states: [[Double]], budget: Int, candidates: [Int]? = nil) -> SelectionInput {
        let c = candidates ?? Array(states.indices)
        return SelectionInput(layer: 0, stage: 0, budget: budget, candidates: c, grid: ImageGrid(rows: 1, cols: states.count), gridCells: c,
                              attentionScores: { Issue.record("DivPrune read attention"); return [] }, hiddenStates: { states })
    }

    static func unit(degrees a: Double) -> [Double] { [cos(a * .pi / 180), sin(a * .pi / 180)] }

    /// Five unit vectors at 0°, 10°, 90°, 180°, 95°, worked by hand: nearest-other distances
    /// are 1−cos 10°, 1−cos 10°, 1−cos 5°, 1−cos 85°, 1−cos 5°, so 180° is first; then the
    /// farthest from it is 0° (distance 2); then from {180°, 0°}: 10° is 1−cos 10°, 90° is
    /// min(1, 1) = 1, 95° is min(1−cos 85°, 1+cos 85°) = 1−cos 85°, so 90°.
    @Test func divPruneByHand() throws {
        let angles: [Double] = [0, 10, 90, 180, 95]
        let states = angles.map { Self.unit(degrees: $0) }
        let s = DivPrune(states: states, budget: 3)
        #expect(s.kept == [0, 2, 3])
        let d: (Double) -> Double = { 1 - cos($0 * .pi / 180) }
        let expected = [2, d(10), 1, d(85), d(5)]
        for (j, e) in expected.enumerated() { #expect(abs(s.scores[j] - e) < 1e-12, "candidate \(j): \(s.scores[j]) vs \(e)") }
        // The order of picks shows in the prefixes: 1 → [3], 2 → [0, 3].
        #expect(DivPrune(states: states, budget: 1).kept == [3])
        #expect(DivPrune(states: states, budget: 2).kept == [0, 3])
        #expect(DivPrune(states: states, budget: 5).kept == [0, 1, 2, 3, 4])
        #expect(DivPrune(states: states, budget: 0).kept == [])
        // Scale does not matter (cosine), and candidates are reported by their own indices.
        let scaled = try RoutingPolicy.divPrune(tier: .t64).select(Self.input(states.enumerated().map { i, v in v.map { $0 * Double(i + 1) } },
                                                                            budget: 3, candidates: [10, 11, 12, 13, 14]))
        #expect(scaled.kept == [10, 12, 13])
    }

    /// Ties go to the lowest index; duplicates are never picked twice; a zero vector is at
    /// distance 1 from every other vector.
    @Test func divPruneTiesDuplicatesAndZeros() {
        let same = Array(repeating: [1.0, 2.0, 3.0], count: 4)
        #expect(DivPrune(states: same, budget: 2).kept == [0, 1], "all distances 0: the first indices")
        let withZero = [[1.0, 0], [0, 0], [0.99, 0.01]]
        let s = DivPrune(states: withZero, budget: 2)
        #expect(s.kept == [0, 1], "the zero vector is at distance 1 from both others, the farthest")
        #expect(s.scores[1] == 1)
    }

    /// Embedding-level DART worked by hand: 8 candidates, one text token, k = 6. The image
    /// pivots are the 4 largest L1 norms (c0…c3); 2 remain for 5 pivots: c0 = (4, 0) takes
    /// ⌈2/5⌉ = 1, its least similar c5 (cos −0.894); c1 = (0, 3) takes ⌈1/4⌉ = 1 of {c4, c6, c7},
    /// c6 (cos −0.894); the others take none.
    @Test func dartEmbedByHand() throws {
        let states: [[Double]] = [[4, 0], [0, 3], [-2.5, 0], [0, -2.2], [1, 1], [-1, 0.5], [0.5, -1], [1, 0.1]]
        let input = SelectionInput(layer: 0, stage: 0, budget: 6, candidates: Array(0..<8), grid: ImageGrid(rows: 2, cols: 4),
                                   gridCells: Array(0..<8), attentionScores: { Issue.record("read attention"); return [] },
                                   hiddenStates: { states }, prefixCount: 1, textHiddenStates: { [[-1, -1]] })
        let s = try RoutingPolicy.dartEmbed(tier: .t64).select(input)
        #expect(s.kept == [0, 1, 2, 3, 5, 6])
        let expected = [2, 2, 2, 2, -1 / 2.0.squareRoot(), 1 / 1.25.squareRoot(), 1 / 1.25.squareRoot(), -1 / 1.01.squareRoot()]
        for (j, e) in expected.enumerated() { #expect(abs(s.scores[j] - e) < 1e-12, "candidate \(j): \(s.scores[j]) vs \(e)") }
        // Equal states: pivots and takes by lowest index.
        let same = SelectionInput(layer: 0, stage: 0, budget: 5, candidates: Array(10..<17), grid: ImageGrid(rows: 1, cols: 7),
                                  gridCells: Array(0..<7), attentionScores: { Issue.record("read attention"); return [] },
                                  hiddenStates: { Array(repeating: [1, 2], count: 7) },
                                  prefixCount: 0, textHiddenStates: { [[1, 2], [2, 1]] })
        #expect(try RoutingPolicy.dartEmbed(tier: .t64).select(same).kept == [10, 11, 12, 13, 14])
        #expect(RoutingPolicy.dartEmbed(tier: .t192).selection?.summary.contains("a different method from DART as published") == true)
    }

    func DivPrune(states: [[Double]], budget: Int) -> Selection {
        try! RoutingPolicy.divPrune(tier: .t64).select(Self.input(states, budget: budget))
    }

    /// A layer-0 decision on a real model: both decoders run it (the same kept tokens); every layer processes text +
    /// the kept tokens at re-indexed positions; the kept tokens are DivPrune's on the embeddings.
    @Test func divPruneAtTheLLMInput() throws {
        let w = try ModelWeights.load(directory: Repo.model("tiny-llama"))
        let c = GoldenTraces.traceCase(for: w, model: "tiny-llama")
        let policy = RoutingPolicy.divPrune(tier: .t64)
        let (state, record) = try RoutedPrefill.run(decoder: ReferenceDecoder(weights: w), case: c, policy: policy)
        let n = c.visual.count, k = CountRule.round.count(of: c.grid.count, ratio: 64.0 / 576)
        #expect(record.decisions.map(\.layer) == [0])
        #expect(record.decisions[0].kept.count == k)
        let text = c.sequenceLength - n
        for (l, plan) in record.plans.enumerated() {
            #expect(plan.active.count == text + k, "layer \(l)")
            #expect(plan.positions == .contiguous(text + k), "layer \(l): re-indexed positions")
            #expect(plan.decodePosition == text + k)
        }
        // The embedded input is what DivPrune saw: recompute it from the reference's layer-0 input.
        let rows = (0..<n).map { c.prefixTokens.count + $0 }
        let embedded = ReferenceDecoder(weights: w).hiddenStates(entering: 0, rows: rows, state: try ReferenceDecoder(weights: w).begin(c, kvCapacity: Array(repeating: c.sequenceLength, count: w.config.layers)))
        let expected = DivPrune(states: embedded, budget: k).kept.map { c.gridIndices[$0] }
        #expect(record.decisions[0].kept == expected)
        // Every layer's cache holds the text and the kept tokens only (decode's entries come later).
        for (l, cache) in state.caches.enumerated() { #expect(cache.count == text + k, "layer \(l) KV entries") }
        // The fast decoder's embedded input gives the same selection, and its trace shows one stage.
        let (_, fast) = try RoutedPrefill.run(decoder: FastDecoder(weights: w), case: c, policy: policy)
        #expect(fast.decisions == record.decisions.map { d in var f = d; f.scores = fast.decisions[0].scores; return f })
        for (a, b) in zip(fast.decisions[0].scores, record.decisions[0].scores) { #expect(abs(a - b) < 1e-5) }
        let golden = try Trace.read(from: Repo.root.appendingPathComponent("golden/traces/tiny-llama/divprune-64.h5").path)
        #expect(golden.routeStages.map(\.firstLayer) == [0] && golden.routeStages[0].budget == k, "no stage before a layer-0 decision")
    }

    @Test func layerZeroRules() throws {
        #expect(try LayerRemap.remap([0, 8, 16], to: 8) == [0, 2, 4])
        var p = RoutingPolicy.fastVRelease(tier: .t192)
        p.decisionLayers = [0]
        try p.validate()  // the decision layer's own attention at layer 0
        p.scorer.attention = .producedByPreviousLayer
        #expect(throws: RoutingError.self) { try p.validate() }
        // Through a policy file, named by field.
        let file = PolicyFile.encode(p)
        #expect(throws: InputError.self) { try PolicyFile.decode(Data(file.utf8), file: "mine.json") }
        // An attention top-k at layer 0 passes the conformance suite on both decoders.
        p.scorer.attention = .decisionLayerInput
        p.name = "fastv-at-input"
        let report = checkConformance(p, options: ConformanceOptions(seeds: [1]))
        #expect(report.passed, "\(report.rendered())")
    }

    @Test func divPrunePolicyFileAndCost() throws {
        for tier in Tier.allCases {
            let p = RoutingPolicy.divPrune(tier: tier)
            let text = PolicyFile.encode(p)
            #expect(text.contains("\"selection\": \"divprune\""))
            #expect(try PolicyFile.decode(Data(text.utf8), file: "divprune.json") == p)
        }
        let bad = PolicyFile.encode(.divPrune(tier: .t64)).replacingOccurrences(of: "\"divprune\"", with: "\"diverse\"")
        do {
            _ = try PolicyFile.decode(Data(bad.utf8), file: "mine.json")
            Issue.record("an unknown selection rule was accepted")
        } catch let e as InputError {
            #expect("\(e)".contains("mine.json: selection: bad value: 'diverse' is not one of divprune"), "\(e)")
        }
        let w = try ModelWeights.load(directory: Repo.model("tiny-llama"))
        let c = GoldenTraces.traceCase(for: w, model: "tiny-llama")
        let costs = try BudgetCalculator.scoringCosts(config: w.config, policy: .divPrune(tier: .t64), textTokens: 8, grid: c.grid)
        #expect(costs.map(\.layer) == [0])
        #expect(costs[0].flops == 2 * Double(w.config.hiddenSize) * Double(c.visual.count * c.visual.count))
        // Under non-monotonic routing a rule's candidates are every live token.
        var routed = RoutingPolicy.divPrune(tier: .t64)
        (routed.action, routed.positions, routed.decisionLayers, routed.keepRatios) = (.route(monotonic: false), .original, [0, 16], [0.5, 0.25])
        routed.scorer.domain = .allTokens
        let routedCosts = try BudgetCalculator.scoringCosts(config: w.config, policy: routed, textTokens: 8, grid: c.grid)
        #expect(routedCosts.map(\.flops) == Array(repeating: 2 * Double(w.config.hiddenSize) * Double(c.visual.count * c.visual.count), count: 2))
        let caps = RoutingPolicy.divPrune(tier: .t64).capabilities
        #expect(!caps.keepsTopKOfScores && !caps.scoresAreAttention)
    }
}
