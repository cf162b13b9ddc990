import Foundation

extension RoutingPolicy {
    /// DivPrune (Alvar et al., CVPR 2025, arXiv 2503.02175; official code vbdi/divprune@799e2d9,
    /// `LLaVA/llava/model/llava_arch.py`, `DivPrune` and the end of
    /// `prepare_inputs_labels_for_multimodal`): at the LLM input (layer 0), keep
    /// `round(N·r)` of the N projected visual embeddings (Python's `round`, halves to even) by
    /// greedy max–min cosine diversity (`DivPruneSelection`), delete the rest, and re-index
    /// the positions of the shortened sequence `0 ..< n` (transformers derives them from the
    /// pruned attention mask; decode continues at n). The tier keeps T of 576 (r = T/576),
    /// which is the tier's avg_T since every layer runs with them; the paper's own setting is
    /// r = 0.098 (56 tokens). The scorer is not read. 1-D RoPE only: the official code has no
    /// M-RoPE path and re-indexed positions are not defined for 3-D positions.
    public static func divPrune(tier: Tier) -> RoutingPolicy {
        divPrune(name: "divprune-\(tier.rawValue)", ratio: Double(tier.rawValue) / 576)
    }

    /// DivPrune at keep ratio `ratio` of N.
    public static func divPrune(name: String = "divprune", ratio: Double = 0.098) -> RoutingPolicy {
        .selecting(.divPrune, name: name, layer: 0, keepRatio: ratio, countRule: .round, positions: .reindexed,
                   provenance: "DivPrune, arXiv 2503.02175; vbdi/divprune@799e2d950aa01ba7860907f5a6d86061f885dca6 (LLaVA/llava/model/llava_arch.py: DivPrune)")
    }
}

/// DivPrune's greedy max–min diversity selection (SPEC.md §8.15).
///
/// With `x_j` the hidden state of candidate j entering the decision layer and
/// `D[i][j] = 1 − x_i·x_j / (‖x_i‖ ‖x_j‖)` (cosine distance, `D[j][j] = 0`; a zero vector is
/// at distance 1 from every other), the first pick is the candidate whose nearest other
/// candidate is farthest, `argmax_j min_{i≠j} D[i][j]`; each next pick is
/// `argmax_j min_{s selected} D[s][j]` over the candidates not yet selected, until
/// `keepCount` are chosen; ties go to the lowest index (`torch.argmax`). The official code
/// does not exclude selected tokens (they score `D[j][j] ≈ 0` and lose to any positive
/// distance): the two differ only when every remaining distance is 0, where it would pick a
/// token twice. Kept tokens are returned ascending. Score of a candidate: the value it was
/// picked with, or for one not picked its value in the last round (its distance to the
/// final selected set; with nothing selected, its nearest other's distance).
enum DivPruneSelection {
    static func select(_ input: SelectionInput) -> Selection {
        let n = input.candidates.count, k = input.keepCount
        let x = input.hiddenStates()
        let norms = x.map { $0.reduce(0) { $0 + $1 * $1 }.squareRoot() }
        let unit = zip(x, norms).map { v, norm in norm > 0 ? v.map { $0 / norm } : v }
        func distance(_ i: Int, _ j: Int) -> Double {
            if i == j { return 0 }
            if norms[i] == 0 || norms[j] == 0 { return 1 }
            var dot = 0.0
            for t in unit[i].indices { dot += unit[i][t] * unit[j][t] }
            return 1 - dot
        }
        var value = (0..<n).map { j in (0..<n).filter { $0 != j }.map { distance($0, j) }.min() ?? 0 }
        var picked = [Bool](repeating: false, count: n)
        var score = value
        for round in 0..<k {
            var best = -1
            for j in 0..<n where !picked[j] && (best < 0 || value[j] > value[best]) { best = j }
            picked[best] = true
            score[best] = value[best]
            if round == 0 {
                value = (0..<n).map { distance(best, $0) }
            } else {
                for j in 0..<n { value[j] = min(value[j], distance(best, j)) }
            }
        }
        for j in 0..<n where !picked[j] { score[j] = value[j] }
        let kept = (0..<n).filter { picked[$0] }.map { input.candidates[$0] }
        return Selection(kept: kept, scores: score)
    }
}
