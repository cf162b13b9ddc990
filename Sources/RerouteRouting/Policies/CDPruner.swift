import Foundation

extension RoutingPolicy {
    /// CDPruner (Zhang et al., "Beyond Attention or Similarity: Maximizing Conditional
    /// Diversity for Token Pruning in MLLMs", arXiv 2506.10967) **as OpenVINO GenAI ships it**
    /// for Qwen2-VL / Qwen2.5-VL images (openvinotoolkit/openvino.genai@da1db86,
    /// `src/cpp/src/visual_language/cdpruner/`: `conditional_kernel.cpp`, `fast_dpp.cpp`,
    /// `cdpruner.cpp`, and `update_position_ids_3d`; `pruning_ratio`, `relevance_weight` 0.5):
    /// at the LLM input, a conditional DPP over the merged visual embeddings with relevance to
    /// the mean text embedding (`CDPrunerSelection`); keep `round(N·(1 − p/100))` (halves away
    /// from zero, the engine's `std::round`) with `p = cdPrunerPruningPercent(tier:)` (zero
    /// tokens when that rounds to 0, a count the engine refuses with an error), delete the
    /// rest, and recompute the positions after the image as the engine does
    /// (`PositionPolicy.textAfterKeptMax`). The official code (LLaVA) takes relevance from
    /// CLIP's image and text embeddings, which a case does not carry; the engine's LLM-space
    /// relevance is what runs in production. The scorer is not read.
    public static func cdPruner(tier: Tier) -> RoutingPolicy {
        let p = cdPrunerPruningPercent(tier: tier)
        return .selecting(.cdPruner, name: "cdpruner-\(tier.rawValue)", layer: 0, keepRatio: 1 - Double(p) / 100, countRule: .roundHalfAway,
                          positions: .textAfterKeptMax,
                          provenance: "CDPruner, arXiv 2506.10967, as OpenVINO GenAI ships it with pruning_ratio \(p): openvinotoolkit/openvino.genai@da1db864d2bc1a265e9a036f5b57ef13f0e86c2c (src/cpp/src/visual_language/cdpruner: conditional_kernel.cpp, fast_dpp.cpp)")
    }

    /// The engine's `pruning_ratio` (an integer percent, 1…99) nearest tier T:
    /// `round(100·(1 − T/576))`, so 67, 78 and 89 for T = 192, 128 and 64. The engine cannot be
    /// set to keep exactly T/576, so the policies keep what it keeps at that setting (190, 127
    /// and 63 of 576) and claim no tier.
    public static func cdPrunerPruningPercent(tier: Tier) -> Int {
        Int((100 * (1 - Double(tier.rawValue) / 576)).rounded())
    }
}

/// CDPruner's selection as OpenVINO GenAI computes it on CPU (SPEC.md §8.15), on the hidden
/// states entering the decision layer (at layer 0, the merged visual embeddings and the text
/// token embeddings).
///
/// With `ε = 1e-6`, `v̂_i = v_i / √(‖v_i‖² + ε)` for the candidates and `t̂` the same of the
/// mean of every text token's embedding: the candidates split into a first half of `⌊N/2⌋`
/// and a second of the rest (the engine's default split), which take `⌊k/2⌋` and `k − ⌊k/2⌋`.
/// In each half, relevance `r_i = v̂_i·t̂` is min-maxed over the half,
/// `r ← (r − min) / (max − min + ε)`, and the kernel is `K_ij = S_ij·(1 − w + w·r_i·r_j)`
/// with `S_ij = v̂_i·v̂_j` and `w = 0.5`. Fast greedy MAP, exactly the half's count: `d = diag K`;
/// each step picks `j = argmax d` (first index on ties), `e = (K_j − Σ_s c_s[j]·c_s) / √(d_j + ε)`
/// (terms with `|c_s[j]| < ε` skipped), `d −= e²` for the unpicked, `d_j = −∞`. Kept ascending.
/// Score: the `d_j` a token was picked with (its conditional gain), else its last `d`.
enum CDPrunerSelection {
    static let epsilon = 1e-6, relevanceWeight = 0.5

    static func select(_ input: SelectionInput) -> Selection {
        let n = input.candidates.count, k = input.keepCount
        let unit: ([Double]) -> [Double] = { v in
            let s = (v.reduce(0) { $0 + $1 * $1 } + epsilon).squareRoot()
            return v.map { $0 / s }
        }
        let v = input.hiddenStates().map(unit)
        let text = input.textHiddenStates()
        let mean = text.isEmpty ? [Double](repeating: 0, count: v.first?.count ?? 0)
            : (0..<text[0].count).map { e in text.reduce(0) { $0 + $1[e] } / Double(text.count) }
        let t = unit(mean)
        func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
        var kept: [Int] = [], score = [Double](repeating: 0, count: n)
        let halves = n > 1 ? [0..<(n / 2), (n / 2)..<n] : [0..<n]
        let counts = halves.count == 2 ? [k / 2, k - k / 2] : [k]
        for (half, count) in zip(halves, counts) {
            let rows = Array(half)
            var r = rows.map { dot(v[$0], t) }
            let lo = r.min() ?? 0, hi = r.max() ?? 0
            r = r.map { ($0 - lo) / (hi - lo + epsilon) }
            let kernel = rows.indices.map { i in
                rows.indices.map { j in dot(v[rows[i]], v[rows[j]]) * (1 - relevanceWeight + relevanceWeight * r[i] * r[j]) }
            }
            let (picked, gains) = greedyMAP(kernel, count: count)
            kept += picked.map { rows[$0] }
            for (i, g) in gains.enumerated() { score[rows[i]] = g }
        }
        return Selection(kept: kept.sorted().map { input.candidates[$0] }, scores: score)
    }

    /// Fast greedy MAP inference of a DPP (Chen et al. 2018) as the engine's CPU path runs it.
    /// Returns the picks in order and, per row, the gain it was picked with or its final one.
    static func greedyMAP(_ K: [[Double]], count: Int) -> (picked: [Int], gains: [Double]) {
        let m = K.count
        var d = (0..<m).map { K[$0][$0] }
        var c: [[Double]] = []
        var picked: [Int] = [], gains = [Double](repeating: 0, count: m)
        var taken = [Bool](repeating: false, count: m)
        for _ in 0..<min(count, m) {
            var j = -1
            for i in 0..<m where !taken[i] && (j < 0 || d[i] > d[j]) { j = i }
            gains[j] = d[j]
            var e = K[j]
            for cs in c where abs(cs[j]) >= epsilon { for i in 0..<m { e[i] -= cs[j] * cs[i] } }
            let s = (d[j] + epsilon).squareRoot()
            e = e.map { $0 / s }
            c.append(e)
            taken[j] = true
            picked.append(j)
            for i in 0..<m where !taken[i] {
                d[i] -= e[i] * e[i]
                if d[i].isNaN { d[i] = -Double(Float.greatestFiniteMagnitude) }
                gains[i] = d[i]
            }
        }
        return (picked, gains)
    }
}
