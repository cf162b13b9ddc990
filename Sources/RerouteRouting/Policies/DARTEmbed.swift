import Foundation

extension RoutingPolicy {
    /// Embedding-level DART, as NVIDIA TensorRT-Edge-LLM ships it (docs "Visual token pruning";
    /// `cpp/runtime/preprocess/dartPruner.cpp`, read at nvluxiaoz/TensorRT-Edge-LLM@2add2e2, a
    /// fork of NVIDIA/TensorRT-Edge-LLM): **a different method from DART as published**
    /// (Wen et al., arXiv 2502.11494), which scores at layer 2 with layer 1's keys and normed
    /// states; the engine cannot observe those ("this implementation is the embedding-level
    /// variant"), so it runs on the LLM input embeddings (`DARTEmbedSelection`). At layer 0,
    /// keep `⌈N·T/576⌉` of the N visual tokens (the engine's `ceil(span·(1 − ratio))`), delete
    /// the rest, keep the original (M-)RoPE positions (decode continues after the unpruned
    /// length). 4 image and 4 text pivots (the published defaults). The scorer is not read.
    /// The engine leaves images of fewer than 16 tokens unpruned (`minVisualTokens`); the
    /// policy always keeps its count, so the tiny models' small grids are pruned too.
    public static func dartEmbed(tier: Tier) -> RoutingPolicy {
        var p = RoutingPolicy(name: "dart-embed-\(tier.rawValue)",
                              scorer: Scorer(query: .lastToken, attention: .decisionLayerInput, heads: .mean, domain: .activeTokens),
                              decisionLayers: [0], keepRatios: [Double(tier.rawValue) / 576], countRule: .ceil, action: .delete,
                              positions: .original)
        p.selection = .dartEmbed
        p.provenance = "embedding-level DART (not DART as published): TensorRT-Edge-LLM visual-token-pruning docs; nvluxiaoz/TensorRT-Edge-LLM@2add2e29d55b0f4b6c6de73d02a6faf29a973e0d (cpp/runtime/preprocess/dartPruner.cpp)"
        return p
    }
}

/// Embedding-level DART's selection (SPEC.md §8.15), on the hidden states entering the
/// decision layer (at layer 0, the LLM input embeddings).
///
/// Pivots: the `min(4, k)` candidates of largest L1 norm, and the 4 text tokens (any text,
/// before or after the image) of largest L1 norm; ties to the lower index. The image pivots
/// are kept. Then each pivot in turn (image pivots by descending L1 norm, then text pivots
/// likewise) takes `⌈remaining / pivots left⌉` of the pool (the candidates not yet kept) of
/// lowest cosine similarity to it, `cos(a, b) = a·b / max(‖a‖‖b‖, 1e-8)`, ties to the lower
/// index, so exactly `k` are kept. Score: 2 for an image pivot; −cos to the pivot that took
/// it for another kept token; for a token not kept, −(its largest cosine to any pivot).
enum DARTEmbedSelection {
    static let imagePivots = 4, textPivots = 4

    static func select(_ input: SelectionInput) -> Selection {
        let n = input.candidates.count, k = input.keepCount
        let x = input.hiddenStates(), text = input.textHiddenStates()
        func l1(_ v: [Double]) -> Double { v.reduce(0) { $0 + abs($1) } }
        func cosine(_ a: [Double], _ b: [Double]) -> Double {
            var dot = 0.0, na = 0.0, nb = 0.0
            for t in a.indices { dot += a[t] * b[t]; na += a[t] * a[t]; nb += b[t] * b[t] }
            return dot / max(na.squareRoot() * nb.squareRoot(), 1e-8)
        }
        // Largest first, ties to the lower index.
        func top(_ values: [Double], _ m: Int) -> [Int] {
            Array(values.indices.sorted { values[$0] != values[$1] ? values[$0] > values[$1] : $0 < $1 }.prefix(m))
        }
        let imagePivotRows = top(x.map(l1), min(imagePivots, k))
        let pivots = imagePivotRows.map { x[$0] } + top(text.map(l1), min(textPivots, text.count)).map { text[$0] }
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
