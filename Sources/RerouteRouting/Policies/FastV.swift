extension RoutingPolicy {
    /// Official FastV (pkunlp-icler/FastV@d165972, KV-cache variant; SPEC.md §8.9): the
    /// attention probabilities layer K−1 produced, last token's row, head mean; prune
    /// before layer K, keep `round(N·(1−R))`, original positions. Paper defaults K=2, R=50%.
    public static func fastV(k: Int = 2, r: Double = 0.5) -> RoutingPolicy {
        RoutingPolicy(
            name: k == 2 && r == 0.5 ? "fastv" : "fastv-k\(k)-r\(Int((r * 100).rounded()))",
            scorer: Scorer(query: .lastToken, attention: .producedByPreviousLayer, heads: .mean, domain: .activeTokens),
            decisionLayers: [k], keepRatios: [1 - r], countRule: .round, action: .delete, positions: .original)
    }

    /// The Reroute release's FastV baseline (`fastv_K3`, physical_delete): decision layer K=3's
    /// own norm + Q/K + RoPE on its input, softmax over the whole current sequence, last
    /// row, head mean; keep `max(1, ⌊N·r⌋)`; original positions.
    public static func fastVRelease(tier: Tier) -> RoutingPolicy {
        RoutingPolicy(
            name: "fastv-release-\(tier.rawValue)",
            scorer: Scorer(query: .lastToken, attention: .decisionLayerInput, heads: .mean, domain: .allTokens),
            decisionLayers: [3], keepRatios: [fastVReleaseRatio(tier)], countRule: .floorAtLeastOne,
            action: .delete, positions: .original)
    }

    /// `keep_ratio` of the release's FastV-family configs (k = 152 / 81 / 11 of 576).
    static func fastVReleaseRatio(_ tier: Tier) -> Double {
        switch tier {
        case .t192: 0.2644
        case .t128: 0.1418
        case .t64: 0.01916
        }
    }
}
