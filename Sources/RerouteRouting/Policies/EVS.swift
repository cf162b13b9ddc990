import Foundation

extension RoutingPolicy {
    /// EVS, efficient video sampling (Bagrov et al., arXiv 2510.14624), as vLLM ships it for
    /// Qwen2.5-VL (`vllm/multimodal/evs.py`, `compute_retention_mask` and
    /// `recompute_mrope_positions`, read at vllm-project/vllm@926c71f; `--video-pruning-rate q`):
    /// at the LLM input of a video, keep `⌊N·(1 − q)⌋` of its N tokens (`EVSSelection`: all of
    /// frame 0, then the tokens most changed since the same cell of the previous frame),
    /// delete the rest. `recomputed: true` is what vLLM runs: the text after the video
    /// restarts at `base + cols` (`PositionPolicy.textAfterGridWidth`); `false` keeps every
    /// token's original M-RoPE ids (`PositionPolicy.original`), the other named variant. vLLM
    /// keeps `max(cells per frame, int(N·(1 − q)))`; the two agree whenever
    /// `q ≤ 1 − 1/frames` (below one frame the policy keeps the first cells of frame 0).
    /// The scorer is not read.
    public static func evs(pruningRate q: Double, recomputed: Bool = true) -> RoutingPolicy {
        let percent = Int((q * 100).rounded())
        return .selecting(.evs, name: "evs-\(percent)" + (recomputed ? "" : "-kept-positions"), layer: 0, keepRatio: 1 - q, countRule: .floor,
                          positions: recomputed ? .textAfterGridWidth : .original,
                          provenance: "EVS, arXiv 2510.14624; vllm-project/vllm@926c71f6f25f8fe0a71ba4b168205e64bef24a36 (vllm/multimodal/evs.py: compute_retention_mask, recompute_mrope_positions)")
    }
}

/// EVS's retention (SPEC.md §8.15), on the hidden states entering the decision layer (at
/// layer 0, the video's embeddings after the merger), over the whole video grid.
///
/// For the token of frame t ≥ 1 at cell c, `dis = 1 − cos(x[t, c], x[t − 1, c])` (torch's
/// `cosine_similarity`, eps 1e-8); every token of frame 0 scores 255, above any
/// dissimilarity. The k kept are the first k of a stable descending sort of `dis` (ties to
/// the lower index: the earlier frame, then raster order), returned ascending. Score: `dis`.
enum EVSSelection {
    static func select(_ input: SelectionInput) throws -> Selection {
        let g = input.grid, n = input.candidates.count
        guard input.candidates == Array(0..<g.count), input.gridCells == Array(0..<g.count) else {
            throw RoutingError.badInput("EVS compares every token with the same cell of the previous frame: it needs the whole \(g.description) grid as candidates")
        }
        let x = input.hiddenStates(), cells = g.cellsPerFrame
        let dis = (0..<n).map { j in j < cells ? 255 : 1 - SelectionMath.cosine(x[j], x[j - cells]) }
        let order = (0..<n).sorted { dis[$0] != dis[$1] ? dis[$0] > dis[$1] : $0 < $1 }
        return Selection(kept: order.prefix(input.keepCount).sorted(), scores: dis)
    }
}
