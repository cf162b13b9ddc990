extension RoutingPolicy {
    /// Official Nüwa on LLaVA (Man-PaperRejected/Nuwa@175b7d5; SPEC.md §8.8, §8.11): stage 1
    /// keeps K1 = 112/224/336 of 576 spatially spread, aggregated anchors (1/2/3 per 2×2
    /// region, penalty quantile 0.55, τ = √280 on a 24-wide grid); stage 2 at layer 16 keeps
    /// 16/32/48 of 576 by the attention layer 15 produced (last token, head mean), deleting
    /// the rest; original positions.
    public static func nuwa(tier: Tier) -> RoutingPolicy {
        let (k1, perRegion, k2) = nuwaCounts(tier)
        return RoutingPolicy(
            name: "nuwa-\(tier.rawValue)",
            scorer: Scorer(query: .lastToken, attention: .producedByPreviousLayer, heads: .mean, domain: .activeTokens),
            decisionLayers: [16], keepRatios: [Double(k2) / 576], countRule: .floorAtLeastOne,
            action: .delete, positions: .original,
            visionStage: NuwaVisionStage(keepRatio: Double(k1) / 576, perRegion: perRegion))
    }

    /// (K1, top-n per region, k2) for N = 576.
    static func nuwaCounts(_ tier: Tier) -> (Int, Int, Int) {
        switch tier {
        case .t64: (112, 1, 16)
        case .t128: (224, 2, 32)
        case .t192: (336, 3, 48)
        }
    }
}
