extension RoutingPolicy {
    /// The scorer of every Reroute decision (elmma/mllm-reroute@9d42204 `models/router.py`,
    /// `models/patching.py`): the decision layer's own norm + Q/K + RoPE on its input for the
    /// full sequence (deferred tokens with their stale states), softmax over all tokens,
    /// head mean, last row.
    static let rerouteScorer = Scorer(query: .lastToken, attention: .decisionLayerInput, heads: .mean, domain: .allTokens)

    /// Reroute on FastV (`ours_vs_fastv`, compact_route): FastV K=3's count at decisions
    /// [3, 7, 15, 23], every visual token a candidate at each; per-layer counts equal FastV's.
    public static func rerouteFastV(tier: Tier) -> RoutingPolicy {
        let r = fastVReleaseRatio(tier)
        return RoutingPolicy(
            name: "reroute-fastv-\(tier.rawValue)", scorer: rerouteScorer, decisionLayers: [3, 7, 15, 23],
            keepRatios: [r, r, r, r], countRule: .floorAtLeastOne, action: .route(monotonic: false), positions: .original,
            budgetMatching: .perLayer(base: "fastv-release-\(tier.rawValue)"))
    }

    /// Reroute on PDrop (`ours_vs_pdrop`): boundaries [2, 7, 15, 23] with the re-shaped profile
    /// [α, α, α/2, α/4]; matched to the PDrop baseline on avg_T only.
    public static func reroutePDrop(tier: Tier) -> RoutingPolicy {
        let a: Double = switch tier {
        case .t192: 0.4502
        case .t128: 0.2655
        case .t64: 0.1392
        }
        return RoutingPolicy(
            name: "reroute-pdrop-\(tier.rawValue)", scorer: rerouteScorer, decisionLayers: [2, 7, 15, 23],
            keepRatios: [a, a, a / 2, a / 4], countRule: .floorAtLeastOne, action: .route(monotonic: false),
            positions: .original, budgetMatching: .averageTokens(base: "pdrop-release-\(tier.rawValue)"))
    }

    /// Reroute on Nüwa (not in the release; SPEC.md §8.11 gives the interpretation): Nüwa's
    /// stage 1 unchanged; stage 2 becomes a routing decision at layer 16 with re-decisions at
    /// the later release boundary 23, all with Nüwa's k2, so per-layer counts equal Nüwa's.
    public static func rerouteNuwa(tier: Tier) -> RoutingPolicy {
        let base = nuwa(tier: tier)
        return RoutingPolicy(
            name: "reroute-nuwa-\(tier.rawValue)", scorer: rerouteScorer, decisionLayers: [16, 23],
            keepRatios: [base.keepRatios[0], base.keepRatios[0]], countRule: .floorAtLeastOne,
            action: .route(monotonic: false), positions: .original, visionStage: base.visionStage,
            budgetMatching: .perLayer(base: base.name))
    }
}
