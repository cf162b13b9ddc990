extension RoutingPolicy {
    /// Official PyramidDrop (Cooperx521/PyramidDrop@6444f30 `pdrop_forward`, `pdrop_rank_drop`;
    /// SPEC.md §8.10): stage boundaries [8, 16, 24]; at each, the next layer's (= the
    /// decision layer's) norm + Q/K on its input, the last instruction token's causal row over
    /// the current sequence, head mean; keep `⌊N·λ^s⌋` of the original N; positions
    /// re-indexed `0 ..< n` after each stage, decode positions shifted to match.
    public static func pyramidDrop(lambda: Double = 0.5) -> RoutingPolicy {
        RoutingPolicy(
            name: lambda == 0.5 ? "pdrop" : "pdrop-lambda\(lambda)",
            scorer: Scorer(query: .lastInstructionToken, attention: .decisionLayerInput, heads: .mean, domain: .activeTokens),
            decisionLayers: [8, 16, 24], keepRatios: [lambda, lambda * lambda, lambda * lambda * lambda],
            countRule: .floor, action: .delete, positions: .reindexed)
    }

    /// Official PyramidDrop with original positions kept (named variant).
    public static func pyramidDropOriginalPositions(lambda: Double = 0.5) -> RoutingPolicy {
        var p = pyramidDrop(lambda: lambda)
        p.name = lambda == 0.5 ? "pdrop-original-positions" : "pdrop-lambda\(lambda)-original-positions"
        p.positions = .original
        return p
    }

    /// The Reroute release's PDrop baseline (`pdrop_earlyL2`, physical_delete, monotonic):
    /// boundaries [2, 7, 15, 23], λ-geometric ratios of the tier, the decision layer's own
    /// Q/K, softmax over the current sequence, keep `max(1, ⌊N·r⌋)`, original positions.
    public static func pyramidDropRelease(tier: Tier) -> RoutingPolicy {
        RoutingPolicy(
            name: "pdrop-release-\(tier.rawValue)",
            scorer: Scorer(query: .lastToken, attention: .decisionLayerInput, heads: .mean, domain: .allTokens),
            decisionLayers: [2, 7, 15, 23], keepRatios: pyramidDropReleaseRatios(tier), countRule: .floorAtLeastOne,
            action: .delete, positions: .original)
    }

    /// `keep_ratios` of the release's `pdrop_earlyL2_avg*` configs. The avg64 config is not
    /// λ-geometric and gives avg_T ≈ 81, not 64 (SPEC.md §8.12, an open question upstream).
    static func pyramidDropReleaseRatios(_ tier: Tier) -> [Double] {
        switch tier {
        case .t192: [0.5965, 0.3558, 0.2123, 0.1266]
        case .t128: [0.4570, 0.2088, 0.0954, 0.0436]
        case .t64: [0.2789, 0.0937, 0.0315, 0.0106]
        }
    }
}
