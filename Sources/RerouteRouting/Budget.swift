import RerouteModel

/// Prefill cost of one layer (SPEC.md §8.13).
public struct LayerBudget: Sendable, Equatable, Codable {
    public var layer: Int
    public var textTokens: Int
    public var visualTokens: Int
    /// Exact multiply-adds × 2 of this architecture's matrix products: projections with
    /// GQA, causal attention (only the computed triangle), SwiGLU.
    public var flops: Double
    /// FastV paper convention: `4nd² + 2n²d + 2ndm` MACs, n = all tokens.
    public var flopsFastVPaper: Double
    /// PDrop paper convention: `4vd² + 2v²d + 3vdm` MACs, v = visual tokens only.
    public var flopsPDropPaper: Double
    /// KV-cache entries after prefill (text + processed visual).
    public var kvEntries: Int
    /// `kvEntries · 2 (K and V) · H_kv · d_h · bytesPerElement`.
    public var kvBytes: Int

    public init(layer: Int, textTokens: Int, visualTokens: Int, flops: Double, flopsFastVPaper: Double, flopsPDropPaper: Double,
                kvEntries: Int, kvBytes: Int) {
        self.layer = layer
        self.textTokens = textTokens
        self.visualTokens = visualTokens
        self.flops = flops
        self.flopsFastVPaper = flopsFastVPaper
        self.flopsPDropPaper = flopsPDropPaper
        self.kvEntries = kvEntries
        self.kvBytes = kvBytes
    }
}

/// Per-layer budget of a policy on a model and an input shape.
public struct BudgetReport: Sendable, Equatable, Codable {
    public var policy: String
    public var layers: [LayerBudget]
    /// Visual tokens of the image, before any vision-side stage.
    public var imageTokens: Int
    /// Visual tokens entering the LLM.
    public var llmVisualTokens: Int
    public var matching: BudgetMatching
    public var bytesPerElement: Int

    public init(policy: String, layers: [LayerBudget], imageTokens: Int, llmVisualTokens: Int, matching: BudgetMatching,
                bytesPerElement: Int) {
        self.policy = policy
        self.layers = layers
        self.imageTokens = imageTokens
        self.llmVisualTokens = llmVisualTokens
        self.matching = matching
        self.bytesPerElement = bytesPerElement
    }

    /// avg_T = Σ_l n_vis(l) / L, the tier convention of Reroute, Nüwa and PDrop Table 5.
    public var averageVisualTokens: Double { Double(layers.map(\.visualTokens).reduce(0, +)) / Double(layers.count) }
    public var totalFlops: Double { layers.map(\.flops).reduce(0, +) }
    public var totalFlopsFastVPaper: Double { layers.map(\.flopsFastVPaper).reduce(0, +) }
    public var totalFlopsPDropPaper: Double { layers.map(\.flopsPDropPaper).reduce(0, +) }
    public var totalKVEntries: Int { layers.map(\.kvEntries).reduce(0, +) }
    public var totalKVBytes: Int { layers.map(\.kvBytes).reduce(0, +) }
}

/// The scoring work of one routing decision (SPEC.md §8.13), beyond the layer's own budget.
public struct ScoringCost: Sendable, Equatable {
    /// The decision layer.
    public var layer: Int
    /// Keys in the scoring softmax (text + scored visual tokens).
    public var keys: Int
    /// Query rows that score.
    public var queryRows: Int
    /// Keys whose K projection is extra: the keys the decision layer does not process itself
    /// when its own attention scores and positions are kept (it reuses the others' keys);
    /// otherwise all keys (the previous layer's attention, or re-indexed positions).
    public var extraKeys: Int
    /// `2·d·H_kv·d_h·extraKeys + 2·d·H·d_h·ρ + 2·H·d_h·Σ_i (κ − i)` over the ρ query rows
    /// (causal: the i-th row from the end sees κ − i keys); for a selection rule (no keys, no
    /// query rows), the rule's own work (`SelectionRule.flops`).
    public var flops: Double
}

public enum BudgetCalculator {
    /// Image tokens, visual tokens entering the LLM (after a vision-side stage), the schedule,
    /// and the visual tokens each layer processes.
    /// `llmVisualTokens`: the visual tokens a merge before the LLM gave, when known (an
    /// adapter's own merge); else the declared vision-side stage's K1, else every cell.
    static func counts(config c: ModelConfig, policy: RoutingPolicy, grid: ImageGrid, llmVisualTokens: Int? = nil) throws
        -> (image: Int, llm: Int, schedule: Schedule, visual: [Int])
    {
        let n = grid.count
        try policy.check(grid: grid)
        let llmN = llmVisualTokens ?? policy.visionSideBudget(grid: grid) ?? n
        let schedule = try policy.schedule(layers: c.layers, originalN: n, llmN: llmN)
        return (n, llmN, schedule, schedule.visualCounts(n: llmN, layers: c.layers))
    }

    /// Budget of `policy` on `config` for `textTokens` text tokens and an image `grid`.
    /// Scoring work at decision layers is not part of the budget (`scoringCosts` reports it).
    /// `llmVisualTokens`: the visual tokens entering the LLM when an adapter's own merge gave
    /// them (default: the declared vision-side stage's K1, else every cell).
    public static func report(config c: ModelConfig, policy: RoutingPolicy, textTokens: Int, grid: ImageGrid,
                              bytesPerElement: Int = 2, llmVisualTokens: Int? = nil) throws -> BudgetReport {
        let (n, llmN, _, visual) = try counts(config: c, policy: policy, grid: grid, llmVisualTokens: llmVisualTokens)
        return report(config: c, policy: policy.name, matching: policy.budgetMatching, textTokens: textTokens, visualTokens: visual,
                      imageTokens: n, llmVisualTokens: llmN, bytesPerElement: bytesPerElement)
    }

    /// The budget of a run whose layer `l` processed `textTokens + visualTokens[l]` tokens
    /// (the formulas of SPEC.md §8.13; `report(config:policy:…)` gives the counts from a
    /// policy's schedule, a trace without `/budget` from its processed sets).
    public static func report(config c: ModelConfig, policy: String, matching: BudgetMatching, textTokens: Int, visualTokens visual: [Int],
                              imageTokens n: Int, llmVisualTokens llmN: Int, bytesPerElement: Int) -> BudgetReport {
        let d = Double(c.hiddenSize), m = Double(c.intermediateSize)
        let q = Double(c.queryWidth), kv = Double(c.kvWidth)
        var layers: [LayerBudget] = []
        for (l, v) in visual.enumerated() {
            let nl = Double(textTokens + v), vd = Double(v)
            let exact = 2 * (nl * d * (2 * q + 2 * kv) + q * nl * (nl + 1) + 3 * nl * d * m)
            let fastv = 4 * nl * d * d + 2 * nl * nl * d + 2 * nl * d * m
            let pdrop = 4 * vd * d * d + 2 * vd * vd * d + 3 * vd * d * m
            let entries = textTokens + v
            layers.append(LayerBudget(layer: l, textTokens: textTokens, visualTokens: v, flops: exact, flopsFastVPaper: fastv,
                                      flopsPDropPaper: pdrop, kvEntries: entries,
                                      kvBytes: entries * 2 * c.kvWidth * bytesPerElement))
        }
        return BudgetReport(policy: policy, layers: layers, imageTokens: n, llmVisualTokens: llmN,
                            matching: matching, bytesPerElement: bytesPerElement)
    }

    /// The scoring work of each decision of `policy` (not part of `report`'s budget): the
    /// keys are the text and the previous layer's visual tokens (softmax over the active
    /// tokens, or over all tokens under deletion), or every LLM visual token under routing
    /// with the softmax over all tokens (deferred tokens are scored from their stale state).
    public static func scoringCosts(config c: ModelConfig, policy: RoutingPolicy, textTokens: Int, grid: ImageGrid) throws -> [ScoringCost] {
        let (_, llmN, schedule, visual) = try counts(config: c, policy: policy, grid: grid)
        let d = Double(c.hiddenSize), q = Double(c.queryWidth), kv = Double(c.kvWidth)
        return schedule.decisionLayers.map { l in
            let entering = l == 0 ? llmN : visual[l - 1]
            if let rule = policy.selection {
                // The candidates, as the session takes them: every live token under non-monotonic routing.
                let candidates = policy.action == .route(monotonic: false) ? llmN : entering
                return ScoringCost(layer: l, keys: 0, queryRows: 0, extraKeys: 0, flops: rule.flops(candidates: candidates, width: c.hiddenSize))
            }
            var scored = entering
            if case .route = policy.action, policy.scorer.domain == .allTokens, policy.scorer.attention == .decisionLayerInput { scored = llmN }
            let keys = textTokens + scored
            let rows: Int
            switch policy.scorer.query {
            case .lastToken, .lastInstructionToken: rows = 1
            case .lastRows(let k): rows = min(k, keys)
            }
            // The decision layer reuses the scored keys of the tokens it processes, which it can
            // only where they keep the positions they were rotated with.
            let reused = policy.scorer.attention == .decisionLayerInput && policy.positions == .original
            let extra = reused ? keys - (textTokens + visual[l]) : keys
            // Causal: of the last `rows` query rows, the i-th from the end sees `keys − i` keys.
            let seen = rows * keys - rows * (rows - 1) / 2
            let flops = 2 * d * kv * Double(extra) + Double(rows) * 2 * d * q + 2 * q * Double(seen)
            return ScoringCost(layer: l, keys: keys, queryRows: rows, extraKeys: extra, flops: flops)
        }
    }
}
