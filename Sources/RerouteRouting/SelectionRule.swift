import RerouteModel

/// How a policy chooses its kept tokens at a decision (SPEC.md §8.15). nil in
/// `RoutingPolicy.selection`: top-k of the scorer's scores, with the suite's tie-break (§8.4).
/// A rule reads what `SelectionInput` offers (the candidates' and the text tokens' hidden
/// states entering the decision layer, the grid) and not the scorer, which it leaves unused.
public enum SelectionRule: String, Sendable, Equatable, Codable, CaseIterable {
    /// Greedy max–min cosine diversity over the candidates' hidden states (DivPrune; at the
    /// LLM input these are the projected visual embeddings). `Policies/DivPrune.swift`.
    case divPrune = "divprune"
    /// Embedding-level DART (TensorRT-Edge-LLM): pivots by L1 norm, the least similar tokens
    /// to each pivot by cosine, on the hidden states entering the decision layer. **Not DART
    /// as published**, which reads layer 1's keys and normed states. `Policies/DARTEmbed.swift`.
    case dartEmbed = "dart-embed"
    /// DART as published: pivots by the L1 norm of the keys the previous layer cached,
    /// duplication by cosine on its final-normed output. Decides at a layer ≥ 1.
    /// `Policies/DART.swift`.
    case dart
    /// EVS (vLLM): at the LLM input of a video, each token's dissimilarity to the same cell of
    /// the previous frame; frame 0 first, then the most changed. `Policies/EVS.swift`.
    case evs
    /// CDPruner as OpenVINO GenAI ships it: a conditional DPP over the visual embeddings with
    /// relevance to the mean text embedding. `Policies/CDPruner.swift`.
    case cdPruner = "cdpruner"

    /// What the rule is, for people (`reroute policy show`).
    public var summary: String {
        switch self {
        case .divPrune: "divprune: greedy max–min cosine diversity (DivPrune)"
        case .dartEmbed: "dart-embed: embedding-level DART (TensorRT-Edge-LLM), a different method from DART as published"
        case .dart: "dart: DART as published (pivots by the previous layer's key L1 norms, duplicates by cosine on its final-normed output)"
        case .evs: "evs: efficient video sampling (vLLM): frame 0, then the tokens most changed since the previous frame"
        case .cdPruner: "cdpruner: conditional DPP with text relevance (CDPruner as OpenVINO GenAI ships it; the official relevance is CLIP's)"
        }
    }

    /// The rule's arithmetic at a decision over `candidates` hidden states of `width` floats
    /// (reported with the scoring costs): DivPrune, the N×N distances, `2·width·N²`;
    /// DART (either variant), each candidate's cosine to the 8 pivots, `2·width·N·8`; EVS, each
    /// token's cosine to the same cell of the previous frame, `2·width·N`; CDPruner, its two
    /// half kernels, `2·width·(⌊N/2⌋² + ⌈N/2⌉²)`.
    public func flops(candidates n: Int, width d: Int) -> Double {
        switch self {
        case .divPrune: 2 * Double(d) * Double(n) * Double(n)
        case .dartEmbed: 2 * Double(d) * Double(n) * Double(DARTEmbedSelection.imagePivots + DARTEmbedSelection.textPivots)
        case .dart: 2 * Double(d) * Double(n) * Double(DARTSelection.imagePivots + DARTSelection.textPivots)
        case .evs: 2 * Double(d) * Double(n)
        case .cdPruner: 2 * Double(d) * (Double(n / 2) * Double(n / 2) + Double(n - n / 2) * Double(n - n / 2))
        }
    }

    /// Refuses a grid the rule is not defined for: CDPruner is modelled for one image (the
    /// engine prunes a video frame by frame, which is not). Checked by `select` and the budget.
    public func check(grid: ImageGrid) throws {
        if self == .cdPruner, grid.isVideo {
            throw RoutingError.badInput("cdpruner is defined for one image here; this case is a \(grid.description) video (the engine prunes videos frame by frame)")
        }
    }

    /// The selection at one decision.
    public func select(_ input: SelectionInput) throws -> Selection {
        try check(grid: input.grid)
        return switch self {
        case .divPrune: DivPruneSelection.select(input)
        case .dartEmbed: DARTEmbedSelection.select(input)
        case .dart: try DARTSelection.select(input)
        case .evs: try EVSSelection.select(input)
        case .cdPruner: CDPrunerSelection.select(input)
        }
    }
}

/// Arithmetic the selection rules share.
enum SelectionMath {
    /// `cos(a, b) = a·b / (max(‖a‖, 1e-8)·max(‖b‖, 1e-8))`: torch's `cosine_similarity`, which
    /// clamps each norm separately (measured on torch 2.13: `cos([1e-9, 0], [1e3, 0]) = 0.1`).
    /// It differs from an unclamped cosine only for a norm below 1e-8.
    static func cosine(_ a: [Double], _ b: [Double]) -> Double {
        var dot = 0.0, na = 0.0, nb = 0.0
        for t in a.indices { dot += a[t] * b[t]; na += a[t] * a[t]; nb += b[t] * b[t] }
        return dot / (max(na.squareRoot(), 1e-8) * max(nb.squareRoot(), 1e-8))
    }
}

extension RoutingPolicy {
    /// A policy whose one decision is a selection rule (SPEC.md §8.15): decide at `layer`
    /// (of the 32-layer reference depth) with `countRule` of `keepRatio`, delete the rest,
    /// lay out `positions`. The scorer is a placeholder the rule never reads (a policy always
    /// declares one: the last token's head-mean attention over the active tokens).
    static func selecting(_ rule: SelectionRule, name: String, layer: Int, keepRatio: Double, countRule: CountRule,
                          positions: PositionPolicy, provenance: String) -> RoutingPolicy {
        var p = RoutingPolicy(name: name, scorer: Scorer(query: .lastToken, attention: .decisionLayerInput, heads: .mean, domain: .activeTokens),
                              decisionLayers: [layer], keepRatios: [keepRatio], countRule: countRule, action: .delete, positions: positions)
        p.selection = rule
        p.provenance = provenance
        return p
    }
}
