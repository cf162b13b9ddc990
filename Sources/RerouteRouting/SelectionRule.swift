/// How a policy chooses its kept tokens at a decision (SPEC.md §8.15). nil in
/// `RoutingPolicy.selection`: top-k of the scorer's scores, with the suite's tie-break (§8.4).
/// A rule reads what `SelectionInput` offers (hidden states entering the decision layer,
/// the grid) and not the scorer, which it leaves unused.
public enum SelectionRule: String, Sendable, Equatable, Codable, CaseIterable {
    /// Greedy max–min cosine diversity over the candidates' hidden states (DivPrune; at the
    /// LLM input these are the projected visual embeddings). `Policies/DivPrune.swift`.
    case divPrune = "divprune"

    /// The rule's arithmetic at a decision over `candidates` hidden states of `width` floats
    /// (reported with the scoring costs): DivPrune, the N×N distances, `2·width·N²`.
    public func flops(candidates n: Int, width d: Int) -> Double {
        switch self {
        case .divPrune: 2 * Double(d) * Double(n) * Double(n)
        }
    }

    /// The selection at one decision.
    public func select(_ input: SelectionInput) throws -> Selection {
        switch self {
        case .divPrune: DivPruneSelection.select(input)
        }
    }
}
