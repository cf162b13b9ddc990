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

    /// What the rule is, for people (`reroute policy show`).
    public var summary: String {
        switch self {
        case .divPrune: "divprune: greedy max–min cosine diversity (DivPrune)"
        case .dartEmbed: "dart-embed: embedding-level DART (TensorRT-Edge-LLM), a different method from DART as published"
        case .dart: "dart: DART as published (pivots by the previous layer's key L1 norms, duplicates by cosine on its final-normed output)"
        }
    }

    /// The rule's arithmetic at a decision over `candidates` hidden states of `width` floats
    /// (reported with the scoring costs): DivPrune, the N×N distances, `2·width·N²`;
    /// DART (either variant), each candidate's cosine to the 8 pivots, `2·width·N·8`.
    public func flops(candidates n: Int, width d: Int) -> Double {
        switch self {
        case .divPrune: 2 * Double(d) * Double(n) * Double(n)
        case .dartEmbed: 2 * Double(d) * Double(n) * Double(DARTEmbedSelection.imagePivots + DARTEmbedSelection.textPivots)
        case .dart: 2 * Double(d) * Double(n) * Double(DARTSelection.imagePivots + DARTSelection.textPivots)
        }
    }

    /// The selection at one decision.
    public func select(_ input: SelectionInput) throws -> Selection {
        switch self {
        case .divPrune: DivPruneSelection.select(input)
        case .dartEmbed: DARTEmbedSelection.select(input)
        case .dart: try DARTSelection.select(input)
        }
    }
}
