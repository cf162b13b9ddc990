import RerouteFixtures
import RerouteRouting

/// A worked example of a new pruner adapter (docs/adding-an-adapter.md): a DART-style,
/// duplication-aware selector (after Wen et al., "Stop Looking for Important Tokens in
/// Multimodal Language Models: Duplication Matters More", 2025), written only against the
/// public `PrunerAdapter` API.
///
/// At one decision layer K (2 at depth 32, remapped), with k = the stage budget:
/// 1. pivots: the `p = min(pivots, k)` candidates with the largest L2 norm of the hidden
///    state entering layer K (ties: lower index);
/// 2. every other candidate j scores `1 − max_pivot cos(h_j, h_pivot)` (in [0, 2]: low when
///    it duplicates a pivot); pivots score 3, so they are always kept;
/// 3. keep the top k by score with the suite's tie-break; delete the rest; original positions.
///
/// It reads hidden states and never writes them; it has no state; it is never called at
/// decode. Those are the contract's rules, and `checkConformance` checks them.
public struct DuplicationAwareAdapter: PrunerAdapter {
    public var policy: RoutingPolicy
    public var pivots: Int
    public var tier: Tier?

    /// - Parameters:
    ///   - layer: decision layer at depth 32.
    ///   - keepRatio: kept fraction of the N visual tokens (`max(1, ⌊N·r⌋)`).
    public init(layer: Int = 2, keepRatio: Double, pivots: Int = 4, name: String? = nil, tier: Tier? = nil) {
        self.pivots = pivots
        self.tier = tier
        policy = RoutingPolicy(
            name: name ?? "dart-style-r\(keepRatio)",
            // Declared for completeness (it names the attention the suite may compute); the
            // selection below does not read attention.
            scorer: Scorer(query: .lastToken, attention: .decisionLayerInput, heads: .mean, domain: .allTokens),
            decisionLayers: [layer], keepRatios: [keepRatio], countRule: .floorAtLeastOne, action: .delete, positions: .original)
    }

    /// The adapter at a Reroute budget tier on LLaVA-1.5 (N = 576, 32 layers, K = 2): keep
    /// k = round((32·T − 2·576) / 30) tokens, so that avg_T ≈ T. The ratio is (k + ½)/576 so
    /// that ⌊576·r⌋ = k exactly despite rounding.
    public static func tier(_ t: Tier) -> DuplicationAwareAdapter {
        let k = ((32.0 * Double(t.rawValue) - 2 * 576) / 30).rounded()
        return DuplicationAwareAdapter(keepRatio: (k + 0.5) / 576, name: "dart-style-\(t.rawValue)", tier: t)
    }

    public var capabilities: AdapterCapabilities {
        AdapterCapabilities(keepsTopKOfScores: true, scoresAreAttention: false, tier: tier)
    }

    public func with(policy: RoutingPolicy) -> DuplicationAwareAdapter {
        var out = self
        out.policy = policy
        return out
    }

    public func select(_ input: SelectionInput) throws -> Selection {
        let h = input.hiddenStates()
        let norms = h.map { row in row.reduce(0) { $0 + $1 * $1 }.squareRoot() }
        let positions = Array(h.indices)
        let p = min(pivots, input.keepCount)
        let pivotRows = try selectTopK(candidates: positions, scores: norms, k: p, layer: input.layer).kept
        let isPivot = Set(pivotRows)
        let scores = h.indices.map { j -> Double in
            if isPivot.contains(j) { return 3 }
            let similarity = pivotRows.map { q -> Double in
                let dot = zip(h[j], h[q]).reduce(0) { $0 + $1.0 * $1.1 }
                return norms[j] > 0 && norms[q] > 0 ? dot / (norms[j] * norms[q]) : 0
            }.max() ?? 0
            return 1 - similarity
        }
        return try Selection.topK(input, scores: scores)
    }
}

/// The smallest possible adapter: random selection with a seed. The random numbers depend
/// only on the seed, the decision layer and the candidate's grid cell, so runs are
/// reproducible and both decoders make the same choice.
public struct SeededRandomAdapter: PrunerAdapter {
    public var policy: RoutingPolicy
    public var seed: UInt64

    public init(seed: UInt64, layer: Int = 2, keepRatio: Double) {
        self.seed = seed
        policy = RoutingPolicy(
            name: "random-seed\(seed)-r\(keepRatio)",
            scorer: Scorer(query: .lastToken, attention: .decisionLayerInput, heads: .mean, domain: .allTokens),
            decisionLayers: [layer], keepRatios: [keepRatio], countRule: .floorAtLeastOne, action: .delete, positions: .original)
    }

    public var capabilities: AdapterCapabilities { AdapterCapabilities(keepsTopKOfScores: true, scoresAreAttention: false) }

    public func with(policy: RoutingPolicy) -> SeededRandomAdapter {
        var out = self
        out.policy = policy
        return out
    }

    public func select(_ input: SelectionInput) throws -> Selection {
        let scores = input.candidates.map { j in
            // The suite's generator, seeded per (seed, layer, cell): a well-mixed value in (0, 1].
            var g = SplitMix64(seed: seed ^ (UInt64(input.layer) << 32) ^ UInt64(input.gridCells[j]))
            return g.uniform()
        }
        return try Selection.topK(input, scores: scores)
    }
}
