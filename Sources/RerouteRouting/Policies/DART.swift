import Foundation

extension RoutingPolicy {
    /// DART as published (Wen et al., "Stop Looking for Important Tokens in Multimodal
    /// Language Models: Duplication Matters More", arXiv 2502.11494; official code
    /// ZichenWen1/DART, read at 5a19452 in the fork xqy1111111/DART:
    /// `llava/model/language_model/modeling_llama_self.py` and
    /// `Qwen2_5-VL/Qwen2_5VL_DART/modeling_qwen2_5_vl_self.py`, `get_retained_image_token`).
    /// Before layer K = 2 runs, from what layer K−1 produced: pivots by the L1 norm of the
    /// keys layer K−1 cached (after RoPE), duplication by cosine on layer K−1's output passed
    /// through the final RMSNorm (`DARTSelection`); delete the rest, keep the original
    /// (M-)RoPE positions. Count `4 + 8·⌊N·T/576/8⌋` (`CountRule.dartPivotQuota`: the
    /// official quota per pivot times its 8 pivots, plus the 4 image pivots; 132 for T = 128
    /// on LLaVA-1.5, as the official code keeps). T is the paper's retained count
    /// (`max_num_trunction`), not avg_T: the first K layers run all N. The scorer is not read.
    public static func dart(tier: Tier) -> RoutingPolicy {
        .selecting(.dart, name: "dart-\(tier.rawValue)", layer: 2, keepRatio: Double(tier.rawValue) / 576, countRule: .dartPivotQuota,
                   positions: .original,
                   provenance: "DART, arXiv 2502.11494; ZichenWen1/DART@5a19452fc173017191c247848673e0bde755695a (read in the fork xqy1111111/DART; llava/model/language_model/modeling_llama_self.py: get_retained_image_token)")
    }
}

/// DART's selection as published (SPEC.md §8.15), at decision layer l ≥ 1.
///
/// With `k_j` the key layer l−1 cached for token j (after RoPE, heads concatenated) and
/// `h_j = RMSNorm_final(x_j)` the final-normed hidden state entering layer l (layer l−1's
/// output): image pivots are the `min(4, k)` candidates of largest `‖k_j‖₁`, text pivots the
/// 4 text tokens **after the image** of largest `‖k_j‖₁` (fewer if there are fewer), ties to
/// the lower index. The image pivots are kept. Then the pivots in ascending sequence order
/// take quotas as `DARTPivotGreedy` does, by cosine on `h`, so exactly k are kept.
/// The official code iterates the pivots in CPython's set order of their sequence indices
/// (hash slots, not ranked); ascending order is the suite's fixed choice, and a replay of the
/// official code can differ in which pivot claims a token when pools overlap.
enum DARTSelection {
    static let imagePivots = 4, textPivots = 4

    static func select(_ input: SelectionInput) throws -> Selection {
        let k = input.keepCount
        let keys = try input.previousLayerKeys()
        let states = try input.finalNormed(input.hiddenStates())
        let after = Array(input.prefixCount..<keys.text.count)  // text rows after the image
        let imagePivotRows = DARTPivotGreedy.largestL1(keys.candidates, min(imagePivots, k))
        let textPivotRows = DARTPivotGreedy.largestL1(after.map { keys.text[$0] }, min(textPivots, after.count)).map { after[$0] }
        let text = input.textHiddenStates()
        let textStates = try input.finalNormed(textPivotRows.sorted().map { text[$0] })
        // Ascending sequence order: every image pivot comes before every text pivot after the image.
        let pivots = imagePivotRows.sorted().map { states[$0] } + textStates
        return DARTPivotGreedy.select(input, states: states, imagePivotRows: imagePivotRows, pivots: pivots)
    }
}

/// DART's greedy pass over pivots, shared by DART and its embedding-level variant.
enum DARTPivotGreedy {
    static func cosine(_ a: [Double], _ b: [Double]) -> Double { SelectionMath.cosine(a, b) }

    /// The `m` rows of largest L1 norm, largest first, ties to the lower index.
    static func largestL1(_ rows: [[Double]], _ m: Int) -> [Int] {
        let l1 = rows.map { $0.reduce(0) { $0 + abs($1) } }
        return Array(l1.indices.sorted { l1[$0] != l1[$1] ? l1[$0] > l1[$1] : $0 < $1 }.prefix(m))
    }

    /// The image pivots are kept; then each pivot in `pivots` order takes `⌈remaining / pivots
    /// left⌉` of the pool (candidates not yet kept) of lowest cosine to it, ties to the lower
    /// index, so exactly `keepCount` are kept (with 8 pivots and `CountRule.dartPivotQuota`,
    /// every pivot takes the official fixed quota). Score: 2 for an image pivot; −cos to the
    /// pivot that took it for another kept token; for a token not kept, −(its largest cosine
    /// to any pivot).
    static func select(_ input: SelectionInput, states x: [[Double]], imagePivotRows: [Int], pivots: [[Double]]) -> Selection {
        let n = input.candidates.count, k = input.keepCount
        var kept = Set(imagePivotRows)
        var score = [Double](repeating: 0, count: n)
        for j in imagePivotRows { score[j] = 2 }
        for (t, pivot) in pivots.enumerated() {
            let pool = (0..<n).filter { !kept.contains($0) }
            let take = min(pool.count, (k - kept.count + (pivots.count - t) - 1) / (pivots.count - t))
            guard take > 0 else { continue }
            let similarity = Dictionary(uniqueKeysWithValues: pool.map { ($0, cosine(x[$0], pivot)) })
            let chosen = pool.sorted { similarity[$0]! != similarity[$1]! ? similarity[$0]! < similarity[$1]! : $0 < $1 }.prefix(take)
            for j in chosen { kept.insert(j); score[j] = -similarity[j]! }
        }
        for j in 0..<n where !kept.contains(j) { score[j] = -(pivots.map { cosine(x[j], $0) }.max() ?? 0) }
        return Selection(kept: kept.sorted().map { input.candidates[$0] }, scores: score)
    }
}
