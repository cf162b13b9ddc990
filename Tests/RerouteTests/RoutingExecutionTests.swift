import Foundation
import RerouteFixtures
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteVerify
import Testing

/// Tie-breaking and NaN handling of the top-k selection (SPEC.md §8.4).
@Suite struct TopKTests {
    @Test func allEqualScoresKeepTheLowestIndices() throws {
        let (kept, deferred) = try selectTopK(candidates: [0, 1, 2, 3, 4], scores: [0.2, 0.2, 0.2, 0.2, 0.2], k: 2, layer: 1)
        #expect(kept == [0, 1] && deferred == [2, 3, 4])
    }

    @Test func exactTiesAtTheCutBreakByIndex() throws {
        let (kept, _) = try selectTopK(candidates: [3, 5, 8, 9], scores: [0.1, 0.5, 0.3, 0.3], k: 2, layer: 1)
        #expect(kept == [5, 8])
    }

    @Test func signedZerosAreEqual() throws {
        let (kept, _) = try selectTopK(candidates: [0, 1, 2], scores: [-0.0, 0.0, -1], k: 1, layer: 1)
        #expect(kept == [0])
    }

    @Test func keptIsSortedAndBudgetClipped() throws {
        let (kept, deferred) = try selectTopK(candidates: [1, 4, 6], scores: [0.1, 0.9, 0.5], k: 7, layer: 1)
        #expect(kept == [1, 4, 6] && deferred.isEmpty)
        let (none, all) = try selectTopK(candidates: [1, 4, 6], scores: [0.1, 0.9, 0.5], k: 0, layer: 1)
        #expect(none.isEmpty && all == [1, 4, 6])
    }

    @Test func nanIsAnError() {
        #expect(throws: RoutingError.nanScore(layer: 3, index: 7)) {
            try selectTopK(candidates: [6, 7], scores: [0.5, .nan], k: 1, layer: 3)
        }
    }
}

/// The session aggregates a decoder's probabilities as the scorer says (hand-computed case).
@Suite struct ScorerAggregationTests {
    /// 2 prefix tokens, 4 visual, 1 suffix; S = 7. A fake probe returns fixed probabilities.
    func decide(_ scorer: Scorer, probs: [[[Double]]], k: Double = 0.5) throws -> (RoutingDecision, ScoreRequest) {
        let w = tinyRandomWeights(layers: 3)
        let c = PromptCase(name: "t", prefixTokens: [1, 2], suffixTokens: [3],
                           visual: .embeddings(Matrix(rows: 4, cols: 16, values: [Float](repeating: 0.1, count: 64))),
                           grid: ImageGrid(rows: 2, cols: 2))
        let policy = RoutingPolicy(name: "t", scorer: scorer, decisionLayers: [1], referenceDepth: 3, keepRatios: [k],
                                   countRule: .floor, action: .delete, positions: .original)
        var session = try RoutingSession(policy: policy, llmCase: c, layers: w.config.layers, originalN: 4)
        var seen: ScoreRequest?
        _ = try session.plan(layer: 0) { _ in Issue.record("no scores at layer 0"); return [] }
        _ = try session.plan(layer: 1) { r in seen = r; return probs }
        return (try #require(session.decisions.first), try #require(seen))
    }

    @Test func headMeanOfTheLastRow() throws {
        // One query row, two heads; keys 0..6, visual keys are 2...5.
        let probs: [[[Double]]] = [[[0, 0, 0.1, 0.4, 0.2, 0.1, 0.2], [0, 0, 0.3, 0.0, 0.1, 0.4, 0.2]]]
        let (d, r) = try decide(Scorer(query: .lastToken, attention: .decisionLayerInput, heads: .mean, domain: .allTokens), probs: probs)
        #expect(r.layer == 1 && r.keys == Array(0..<7) && r.queryRows == [6])
        #expect(d.scores == [0.2, 0.2, 0.15000000000000002, 0.25])  // means of (0.1,0.3) (0.4,0) (0.2,0.1) (0.1,0.4)
        #expect(d.kept == [0, 3])  // 0.25 first, then the tie 0.2/0.2 goes to index 0
        #expect(d.deferred == [1, 2] && d.budget == 2)
    }

    @Test func headMaxAfterRowMean() throws {
        // Two query rows (last 2), two heads: score = max_h mean_r P.
        let a: [Double] = [0, 0, 0.1, 0.4, 0.2, 0.1, 0.2], b: [Double] = [0, 0, 0.3, 0.0, 0.1, 0.4, 0.2]
        let probs: [[[Double]]] = [[a, b], [b, a]]
        let (d, r) = try decide(Scorer(query: .lastRows(2), attention: .producedByPreviousLayer, heads: .max, domain: .activeTokens),
                                probs: probs)
        #expect(r.layer == 0 && r.queryRows == [5, 6])
        #expect(d.scores == [0.2, 0.2, 0.15000000000000002, 0.25])  // the two heads' row-means coincide here
    }
}

/// Executing policies in the reference decoder: the laws of SPEC.md §8 on random models
/// and cases (seeds from `TestSeeds`: a failure names its seed, REROUTE_SEED replays it).
@Suite struct RoutingLawTests {
    /// The 1-D cases here exclude the rules defined for 3-D positions only (EVSTests and CDPrunerTests check them)
    /// and the vision-side stages (conformance, NuwaTests and VisionZipTests check them).
    static let policies: [RoutingPolicy] = PolicyCatalog.all.filter {
        $0.visionStage == nil && $0.visionZip == nil && !$0.positions.requiresMultimodal
    }

    /// A random model of 8 to 12 layers (so the 32-layer schedules remap) and a random case.
    static func world(_ seed: UInt64) -> (ReferenceDecoder, PromptCase) {
        var rng = SplitMix64(seed: seed)
        let layers = 8 + Int(rng.next() % 5)
        let gqa = rng.next() % 2 == 0
        let w = withProjector(tinyRandomWeights(family: gqa ? .qwen2 : .llama, layers: layers, hidden: 16, heads: 4,
                                                kvHeads: gqa ? 2 : 4, seed: seed), dv: 6, seed: seed &+ 1)
        let grid = ImageGrid(rows: 2 + Int(rng.next() % 3), cols: 2 + Int(rng.next() % 3))
        let c = randomCase(for: w, seed: seed &+ 2, prefix: 1 + Int(rng.next() % 3), grid: grid, suffix: 1 + Int(rng.next() % 3),
                           visionDim: 6, gapped: rng.next() % 2 == 0)
        return (ReferenceDecoder(weights: w), c)
    }

    /// Seeds: fixed, plus REROUTE_SEED or a fresh one (Swift Testing prints the failing seed).
    @Test(arguments: TestSeeds.with(Array(1...11)))
    func structuralLawsHoldForEveryPolicy(seed: UInt64) throws {
        do {
            let (decoder, c) = Self.world(seed)
            for policy in Self.policies + [.nuwa(tier: .t192), .rerouteNuwa(tier: .t128)] {
                let (prefill, record, decode) = try routedRun(decoder, c, policy)
                let llm = record.llmCase
                let p = llm.prefixTokens.count, n = llm.visual.count, s = llm.sequenceLength
                let text = Array(0..<p) + Array((p + n)..<s)
                let counts = record.schedule.visualCounts(n: n, layers: decoder.config.layers)
                let grid = llm.gridIndices
                var removed = Set<Int>()
                for (l, plan) in record.plans.enumerated() {
                    // Text tokens are never dropped; counts per layer equal the schedule.
                    #expect(text.allSatisfy(plan.active.contains), "\(policy.name) layer \(l)")
                    #expect(plan.active.count == text.count + counts[l], "\(policy.name) layer \(l)")
                    // KV length = text + processed visual; after decode, + fed tokens.
                    #expect(prefill.caches[l].count == plan.active.count)
                    #expect(decode.caches[l].count == plan.active.count + c.decodeSteps - 1)
                    // Bypassed rows are bit-identical across the layer.
                    for i in 0..<s where !plan.active.contains(i) {
                        #expect(prefill.hiddenStates[l + 1][i] == prefill.hiddenStates[l][i], "\(policy.name) layer \(l) row \(i)")
                    }
                    // Positions follow the policy.
                    switch policy.positions {
                    case .original:
                        #expect(plan.positions == llm.positions.gathering(plan.active))
                        #expect(plan.decodePosition == llm.positions.nextDecodePosition)
                    case .reindexed where l >= (record.schedule.decisionLayers.first ?? .max):
                        #expect(plan.positions == .contiguous(plan.active.count))
                        #expect(plan.decodePosition == plan.active.count)
                    case .reindexed:
                        #expect(plan.positions == llm.positions)
                    case .textAfterGridWidth, .textAfterKeptMax:
                        Issue.record("\(policy.name): a 3-D rule on a 1-D case")
                    }
                }
                for d in record.decisions {
                    // kept ∪ deferred = candidates, disjoint, sorted, budget honoured.
                    #expect(d.kept == d.kept.sorted() && d.deferred == d.deferred.sorted())
                    #expect(Set(d.kept).isDisjoint(with: d.deferred))
                    #expect(Set(d.kept).union(d.deferred) == Set(d.candidates))
                    #expect(d.kept.count == min(d.budget, d.candidates.count))
                    // Attention scores are probabilities; DivPrune's cosine distances, in [0, 2];
                    // DART's negated cosines, or 2 for a pivot (up to rounding); EVS's dissimilarities.
                    let (low, top): (Double, Double) = switch record.policy.selection {
                    case nil: (0, 1)
                    case .divPrune: (-1e-12, 2 + 1e-12)
                    case .dartEmbed, .dart: (-1 - 1e-12, 2)
                    case .evs: (0, 255)  // 1 − cos, or 255 for frame 0
                    case .cdPruner: (-Double(Float.greatestFiniteMagnitude), 2)  // DPP gains
                    }
                    #expect(d.scores.count == d.candidates.count && d.scores.allSatisfy { $0 >= low && $0 <= top })
                    // The decision is what the layer executes.
                    let executed = record.plans[d.layer].active.filter { $0 >= p && $0 < p + n }.map { grid[$0 - p] }
                    #expect(executed == d.kept, "\(policy.name) layer \(d.layer)")
                    if policy.action == .delete {
                        #expect(Set(d.candidates).isDisjoint(with: removed), "\(policy.name): a deleted token came back")
                        removed.formUnion(d.deferred)
                    } else if case .route(monotonic: false) = policy.action {
                        #expect(d.candidates == grid, "\(policy.name): every visual token competes again")
                    }
                }
            }
        }
    }

    /// Seeds: fixed, plus REROUTE_SEED or a fresh one (Swift Testing prints the failing seed).
    @Test(arguments: TestSeeds.with(Array(1...7)))
    func keepRatioOneEqualsDenseBitwise(seed: UInt64) throws {
        do {
            let (decoder, c) = Self.world(seed)
            let dense = decoder.prefill(c, plan: .dense(layers: decoder.config.layers, case: c))
            for var policy in [RoutingPolicy.rerouteFastV(tier: .t192), .reroutePDrop(tier: .t64), .fastVRelease(tier: .t64),
                               .pyramidDropRelease(tier: .t128)] {
                policy.keepRatios = policy.keepRatios.map { _ in 1 }
                let (prefill, _, _) = try routedRun(decoder, c, policy)
                #expect(prefill.hiddenStates == dense.hiddenStates, "\(policy.name)")
                #expect(prefill.lastLogits == dense.lastLogits, "\(policy.name)")
            }
        }
    }

    /// Reroute with monotonic decisions and a survivors-only softmax is deletion: the same
    /// decisions, and bit-identical states for every token still processed, and logits.
    /// Seeds: fixed, plus REROUTE_SEED or a fresh one (Swift Testing prints the failing seed).
    @Test(arguments: TestSeeds.with(Array(1...7)))
    func monotonicSurvivorsOnlyRerouteEqualsDeletion(seed: UInt64) throws {
        do {
            let (decoder, c) = Self.world(seed)
            var deletion = RoutingPolicy.pyramidDropRelease(tier: .t128)
            deletion.scorer.domain = .activeTokens
            var routed = deletion
            routed.action = .route(monotonic: true)
            let (a, ra, da) = try routedRun(decoder, c, deletion)
            let (b, rb, db) = try routedRun(decoder, c, routed)
            #expect(ra.decisions.map(\.kept) == rb.decisions.map(\.kept))
            #expect(ra.decisions.map(\.scores) == rb.decisions.map(\.scores))
            #expect(a.lastLogits == b.lastLogits)
            #expect(da.tokens == db.tokens && da.stepLogits == db.stepLogits)
            let last = ra.plans.last!.active
            #expect(last.map { a.hiddenStates.last![$0] } == last.map { b.hiddenStates.last![$0] })
        }
    }

    /// With the all-tokens softmax, a deferred token's stale key changes the scores: the
    /// two variants are really different (so the previous law is not vacuous).
    @Test func deferredKeysEnterTheAllTokensSoftmax() throws {
        let (decoder, c) = Self.world(42)
        var allTokens = RoutingPolicy.rerouteFastV(tier: .t128)
        allTokens.action = .route(monotonic: true)
        var survivors = allTokens
        survivors.scorer.domain = .activeTokens
        let (_, all, _) = try routedRun(decoder, c, allTokens)
        let (_, only, _) = try routedRun(decoder, c, survivors)
        // First decision: nothing is deferred yet, both see the same keys.
        #expect(all.decisions[0].scores == only.decisions[0].scores)
        // Second decision: all-tokens includes the deferred tokens' stale keys.
        #expect(all.decisions[1].scores != only.decisions[1].scores)
    }

    @Test func inconsistentPoliciesAreRefused() {
        var p = RoutingPolicy.rerouteFastV(tier: .t128)
        p.scorer.domain = .activeTokens  // deferred candidates would not be scored
        #expect(throws: RoutingError.self) { try p.validate() }
        var q = RoutingPolicy.rerouteFastV(tier: .t128)
        q.positions = .reindexed
        #expect(throws: RoutingError.self) { try q.validate() }
    }

    @Test func pdropReindexesAndShiftsDecodePositions() throws {
        let (decoder, c) = Self.world(7)
        let (_, record, decode) = try routedRun(decoder, c, .pyramidDrop())
        let firstDecision = record.schedule.decisionLayers[0]
        #expect(record.plans[firstDecision - 1].positions == c.positions)
        for l in firstDecision..<decoder.config.layers {
            let n = record.plans[l].active.count
            #expect(record.plans[l].positions == .contiguous(n))
            // Decode at layer l starts right after that layer's compacted sequence.
            #expect(decode.caches[l].positions.suffix(2).map { $0[0] } == [n, n + 1])
        }
    }
}

/// Nüwa's vision-side stage on a hand-checkable image.
@Suite struct NuwaVisionStageTests {
    @Test func anchorsAggregationAndPenalty() throws {
        // 2×4 grid = two 2×2 regions; one anchor per region (K1 = 2).
        let grid = ImageGrid(rows: 2, cols: 4)
        let m: [Float] = [0.1, 0.9, 0.2, 0.3,
                          0.4, 0.5, 0.8, 0.6]
        // Similarity features: cells 0, 1, 4 point one way, 2, 3, 5, 6, 7 the other.
        let dirs: [[Float]] = [[1, 0], [1, 0], [0, 1], [0, 1], [1, 0], [0, 1], [0, 1], [0, 1]]
        let x = Matrix(rows: 8, cols: 1, values: [1, 2, 3, 4, 5, 6, 7, 8])
        let stage = NuwaVisionStage(keepRatio: 0.25, countRule: .floor, perRegion: 1, penaltyQuantile: 0.55, distanceThreshold: 2)
        let r = try stage.select(features: x, inputs: VisionSideInputs(clsAttention: m, similarityFeatures: Matrix(rows: 8, cols: 2, values: dirs.flatMap { $0 })),
                                 grid: grid)
        #expect(r.anchors == [1, 6])  // region tops: cell 1 (0.9), cell 6 (0.8)
        // quantile_0.55 of [0.9, 0.8] = 0.8 + 0.55 · 0.1 = 0.855: only cell 1 is high-attention.
        #expect(r.highAttention == [1])
        #expect(r.features[0, 0] == 2)  // cell 1 keeps its own feature
        // Cell 6 at (1, 2): similar cells 2 (0,2) d=1, 3 (0,3) d=√2, 5 (1,1) d=1, 7 (1,3) d=1, itself.
        // Kernel 1 − d/2: 0.5, 1 − √2/2, 0.5, 0.5, and 1 for itself.
        let w: [Double] = [0.5, 1 - 2.0.squareRoot() / 2, 0.5, 0.5, 1]
        let total = w.reduce(0, +) + 1e-8
        let expected = 1 * 7 + (0.5 * 3 + w[1] * 4 + 0.5 * 6 + 0.5 * 8) / total
        #expect(abs(Double(r.features[1, 0]) - expected) < 1e-5)
    }

    @Test func stageKeepsOriginalPositions() throws {
        let w = withProjector(tinyRandomWeights(layers: 8), dv: 6, seed: 3)
        let c = randomCase(for: w, seed: 9, prefix: 2, grid: ImageGrid(rows: 4, cols: 6), suffix: 2, visionDim: 6, gapped: true)
        let stage = try #require(RoutingPolicy.nuwa(tier: .t192).visionStage)
        let llm = try stage.apply(to: c)
        let anchors = try #require(llm.visualGridIndices)
        #expect(anchors.count == 14)  // ⌊24 · 336/576⌋
        let kept = [0, 1] + anchors.map { $0 + 2 } + [26, 27]
        #expect(llm.positions == c.positions.gathering(kept))
        try llm.validate(for: w.config, projector: w.projector, file: "test")
    }
}

/// What each shipped scorer asks the decoder for, on a hand-built run: which layer's
/// weights, which keys (with which positions), which query rows.
@Suite struct ScoreRequestTests {
    /// 1 prefix token, 6 visual (2×3), 1 suffix: S = 8; gapped positions.
    let c = PromptCase(name: "t", prefixTokens: [1], suffixTokens: [2],
                       visual: .embeddings(Matrix(rows: 6, cols: 16, values: [Float](repeating: 0, count: 96))),
                       grid: ImageGrid(rows: 2, cols: 3), positions: PositionIDs([0, 2, 3, 5, 6, 8, 9, 11]))

    /// Runs a session on 8 layers with a probe whose score for visual token j is `weight[j]`
    /// (the probability on key `1 + j`), recording every request.
    func requests(_ policy: RoutingPolicy, weights: [Double]) throws -> ([ScoreRequest], RoutingSession) {
        var session = try RoutingSession(policy: policy, llmCase: c, layers: 8, originalN: 6)
        var seen: [ScoreRequest] = []
        for l in 0..<8 {
            _ = try session.plan(layer: l) { r in
                seen.append(r)
                let row = r.keys.map { k in (1...6).contains(k) ? weights[k - 1] : 0.01 }
                return r.queryRows.map { _ in [row, row] }
            }
        }
        return (seen, session)
    }

    @Test func fastVOfficialReadsThePreviousLayer() throws {
        let (r, s) = try requests(.fastV(k: 2, r: 0.5), weights: [0.1, 0.5, 0.2, 0.4, 0.3, 0.0])
        #expect(r.count == 1 && r[0].layer == 0)  // K = 2 remaps to 1 on 8 layers; layer 0 produced the attention
        #expect(r[0].keys == Array(0..<8) && r[0].keyPositions == c.positions && r[0].queryRows == [7])
        #expect(s.decisions[0].kept == [1, 3, 4])  // round(6 · 0.5) = 3 best
    }

    @Test func rerouteKeysDeferredTokensAtOriginalPositions() throws {
        let (r, s) = try requests(.rerouteFastV(tier: .t192), weights: [0.1, 0.5, 0.2, 0.4, 0.3, 0.0])
        #expect(r.map(\.layer) == [1, 2, 4, 6])  // the decision layers' own Q/K
        // Every decision sees all 8 tokens, deferred ones included, at their original positions.
        for q in r { #expect(q.keys == Array(0..<8) && q.keyPositions == c.positions && q.queryRows == [7]) }
        #expect(s.decisions.allSatisfy { $0.candidates == Array(0..<6) && $0.kept == [1] })  // max(1, ⌊6·0.2644⌋) = 1
    }

    @Test func pdropScoresTheShrunkenReindexedSequence() throws {
        let (r, s) = try requests(.pyramidDrop(), weights: [0.1, 0.5, 0.2, 0.4, 0.3, 0.0])
        #expect(r.map(\.layer) == [2, 4, 6])
        #expect(r[0].keys == Array(0..<8) && r[0].keyPositions == c.positions)
        // After keeping ⌊6·0.5⌋ = 3 tokens (visual 1, 3, 4 → sequence 2, 4, 5), positions are 0..<5.
        #expect(s.decisions[0].kept == [1, 3, 4])
        #expect(r[1].keys == [0, 2, 4, 5, 7] && r[1].keyPositions == .contiguous(5))
        #expect(s.decisions[1].candidates == [1, 3, 4] && s.decisions[1].kept == [1])
    }
}
