extension RoutingPolicy {
    /// The unmodified model: every token at every layer.
    public static let dense = RoutingPolicy(
        name: "dense",
        scorer: Scorer(query: .lastToken, attention: .decisionLayerInput, heads: .mean, domain: .allTokens),
        decisionLayers: [], keepRatios: [], countRule: .floor, action: .delete, positions: .original)
}
