import Foundation
import RerouteFast
import RerouteModel
import RerouteRouting
import RerouteTrace
import RerouteVerify
import Testing

/// CDPruner as OpenVINO GenAI ships it (SPEC.md §8.15) and its recomputed image positions (§8.6).
@Suite struct CDPrunerTests {
    static func input(_ states: [[Double]], text: [[Double]], budget: Int) -> SelectionInput {
        SelectionInput(layer: 0, stage: 0, budget: budget, candidates: Array(states.indices), grid: ImageGrid(rows: 1, cols: states.count),
                       gridCells: Array(states.indices), attentionScores: { Issue.record("CDPruner read attention"); return [] },
                       hiddenStates: { states }, prefixCount: 0, textHiddenStates: { text })
    }

    /// Six tokens, text along (1, 0); the halves {0, 1, 2} and {3, 4, 5} take 2 each. In each
    /// half the most relevant token (along the text, r = 1) has the largest gain diag K ≈ 1
    /// and is picked first; its near-duplicate (cos 0.995, r ≈ 0.995) then keeps a gain of
    /// about 0.01, while the orthogonal token (r = 0) keeps K_cc = 0.5·S_cc: diversity wins
    /// the second pick. A DPP over all six at once, or relevance alone, would keep otherwise.
    @Test func cdPrunerByHand() throws {
        let near = [1, 0.1].map { $0 / 1.01.squareRoot() }
        let states: [[Double]] = [[1, 0], near, [0, 1], [1, 0], [0, 1], near]
        let s = try RoutingPolicy.cdPruner(tier: .t64).select(Self.input(states, text: [[2, 0], [0, 0]], budget: 4))
        #expect(s.kept == [0, 2, 3, 4])
        let eps = 1e-6, unitSelf = 1 / (1 + eps)  // ‖v̂‖² of a unit vector
        #expect(abs(s.scores[2] - 0.5 * unitSelf) < 1e-12 && abs(s.scores[4] - 0.5 * unitSelf) < 1e-12)
        #expect(abs(s.scores[0] - unitSelf * (0.5 + 0.5 / ((1 + eps) * (1 + eps)))) < 1e-12)
        #expect(s.scores[1] > 0 && s.scores[1] < 0.02 && s.scores[5] > 0 && s.scores[5] < 0.02)
        // One token to keep: it comes from the second half (⌊1/2⌋ = 0 from the first).
        let one = try RoutingPolicy.cdPruner(tier: .t64).select(Self.input(states, text: [[1, 0]], budget: 1))
        #expect(one.kept == [3])
        #expect(CountRule.roundHalfAway.count(of: 10, ratio: 0.25) == 3 && CountRule.round.count(of: 10, ratio: 0.25) == 2)
    }

    /// The engine's pruning_ratio is an integer percent: the tiers use the nearest setting and
    /// keep what the engine keeps there (std::round(576·(1 − p/100))), not T itself.
    @Test func tiersAreEngineSettings() throws {
        #expect(Tier.allCases.map { RoutingPolicy.cdPrunerPruningPercent(tier: $0) } == [67, 78, 89])
        let counts = Tier.allCases.map { RoutingPolicy.cdPruner(tier: $0) }.map { $0.countRule.count(of: 576, ratio: $0.keepRatios[0]) }
        #expect(counts == [190, 127, 63])
        #expect(RoutingPolicy.cdPruner(tier: .t64).provenance?.contains("pruning_ratio 89") == true)
    }

    /// A video is refused by name: the engine prunes it frame by frame, which is not modelled.
    @Test func videoIsRefused() {
        let grid = ImageGrid(rows: 1, cols: 2, frames: 2)
        let states: [[Double]] = [[1, 0], [0, 1], [1, 0], [0, 1]]
        let input = SelectionInput(layer: 0, stage: 0, budget: 2, candidates: [0, 1, 2, 3], grid: grid, gridCells: [0, 1, 2, 3],
                                   attentionScores: { [] }, hiddenStates: { states }, prefixCount: 0, textHiddenStates: { [[1, 0]] })
        #expect { try RoutingPolicy.cdPruner(tier: .t192).select(input) } throws: { "\($0)".contains("2x1x2 video") }
    }

    /// A 2×3 image after 2 text tokens (transformers: visual (2, 2 + r, 2 + c), text after at
    /// 2 + max(2, 3) = 5). Keeping cells 0 and 4 (the largest kept id is 2 + 1 = 3) the engine
    /// puts the text after at 4; keeping all, at transformers' 5.
    @Test func imagePositionsAfterPruning() {
        let grid = ImageGrid(rows: 2, cols: 3)
        let p = PositionIDs.multimodal(prefix: 2, grid: grid, suffix: 2)
        let (kept, decode) = PositionPolicy.textAfterKeptMax.layout(active: [0, 1, 2, 6, 8, 9], positions: p, visualSpan: 2..<8, grid: grid)
        #expect(kept.axes == [[0, 1, 2, 2, 4, 5], [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]] && decode == 6)
        let all = Array(0..<10)
        let (full, fullDecode) = PositionPolicy.textAfterKeptMax.layout(active: all, positions: p, visualSpan: 2..<8, grid: grid)
        #expect(full == p && fullDecode == p.nextDecodePosition)
    }

    /// Both decoders keep the same tokens on the shipped M-RoPE model, and the text after the
    /// image moves by the rule.
    @Test func decodersAgreeOnTheShippedModel() throws {
        let a = try Goldens.record(.cdPruner(tier: .t192), model: "tiny-qwen2-vl")
        let b = try Goldens.record(.dartEmbed(tier: .t192), model: "tiny-qwen2-vl")
        #expect(a.decisions.map(\.layer) == [0] && a.decisions[0].kept.count == 16)
        #expect(a.input.grid == b.input.grid && a.decisions[0].kept != b.decisions[0].kept)
        let w = try ModelWeights.load(directory: Repo.model("tiny-qwen2-vl"))
        let fast = try TraceRecorder.record(decoder: FastDecoder(weights: w), model: "tiny-qwen2-vl", case: a.input, policy: .cdPruner(tier: .t192), seed: 1)
        #expect(fast.decisions.map(\.kept) == a.decisions.map(\.kept))
    }
}
