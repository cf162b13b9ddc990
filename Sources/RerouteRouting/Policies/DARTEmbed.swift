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
        .selecting(.dartEmbed, name: "dart-embed-\(tier.rawValue)", layer: 0, keepRatio: Double(tier.rawValue) / 576, countRule: .ceil,
                   positions: .original,
                   provenance: "embedding-level DART (not DART as published): TensorRT-Edge-LLM visual-token-pruning docs; nvluxiaoz/TensorRT-Edge-LLM@2add2e29d55b0f4b6c6de73d02a6faf29a973e0d (cpp/runtime/preprocess/dartPruner.cpp)")
    }
}

/// Embedding-level DART's selection (SPEC.md §8.15), on the hidden states entering the
/// decision layer (at layer 0, the LLM input embeddings).
///
/// Pivots: the `min(4, k)` candidates of largest L1 norm, and the 4 text tokens (any text,
/// before or after the image) of largest L1 norm; ties to the lower index. The image pivots
/// are kept. Then each pivot in turn (image pivots by descending L1 norm, then text pivots
/// likewise) takes its quota of least-similar candidates by cosine on the same hidden states,
/// as `DARTPivotGreedy` does, so exactly `k` are kept.
enum DARTEmbedSelection {
    static let imagePivots = 4, textPivots = 4

    static func select(_ input: SelectionInput) -> Selection {
        let k = input.keepCount
        let x = input.hiddenStates(), text = input.textHiddenStates()
        let imagePivotRows = DARTPivotGreedy.largestL1(x, min(imagePivots, k))
        let pivots = imagePivotRows.map { x[$0] } + DARTPivotGreedy.largestL1(text, min(textPivots, text.count)).map { text[$0] }
        return DARTPivotGreedy.select(input, states: x, imagePivotRows: imagePivotRows, pivots: pivots)
    }
}
