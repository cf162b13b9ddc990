import Foundation
import RerouteFixtures
import RerouteModel
import RerouteVerify

/// A random model the suite runs adapters on (no file needed; SplitMix64 weights).
public struct ConformanceModel: Sendable {
    public var name: String
    public var config: ModelConfig
    /// Width of the vision features the projector maps (so vision-side stages can run).
    public var visionDim: Int
    public var seed: UInt64

    public init(name: String, config: ModelConfig, visionDim: Int, seed: UInt64) {
        self.name = name
        self.config = config
        self.visionDim = visionDim
        self.seed = seed
    }

    /// Three shapes: LLaMA-like MHA without bias; Qwen2-like GQA with bias and a head width
    /// that is not a power of two; Qwen2.5-VL-like with 3-D M-RoPE (cases get t/h/w
    /// positions). 8 layers, so every shipped schedule maps to distinct layers (SPEC.md §8.3).
    public static let standard: [ConformanceModel] = [
        ConformanceModel(name: "llama-mha-8L",
                         config: ModelConfig(family: .llama, hiddenSize: 32, layers: 8, heads: 4, kvHeads: 4, intermediateSize: 64,
                                             rmsNormEps: 1e-5, ropeTheta: 10_000, vocabSize: 64, tieWordEmbeddings: false),
                         visionDim: 12, seed: 101),
        ConformanceModel(name: "qwen2-gqa-8L",
                         config: ModelConfig(family: .qwen2, hiddenSize: 36, layers: 8, heads: 6, kvHeads: 2, intermediateSize: 72,
                                             rmsNormEps: 1e-6, ropeTheta: 1_000_000, vocabSize: 64, tieWordEmbeddings: true),
                         visionDim: 12, seed: 202),
        ConformanceModel(name: "qwen2-vl-mrope-8L",
                         config: ModelConfig(family: .qwen2, hiddenSize: 48, layers: 8, heads: 3, kvHeads: 1, intermediateSize: 64,
                                             rmsNormEps: 1e-6, ropeTheta: 100, vocabSize: 64, tieWordEmbeddings: false,
                                             mropeSection: [2, 3, 3]),
                         visionDim: 12, seed: 303),
    ]

    func weights() -> ModelWeights { RandomModel.weights(config, visionDim: visionDim, seed: seed) }
}

/// The cases of the suite, all drawn from a seed.
public enum ConformanceCases {
    /// A non-square image of vision features (3–6 rows, 4–7 columns) between 2–5 prefix and
    /// 2–4 suffix tokens, 3 greedy steps, Nüwa's vision-side inputs and a CLS feature
    /// (VisionZip's); contiguous positions, or
    /// Qwen2-VL's 3-D ones on an M-RoPE model.
    /// With `video`, a video of 3–4 frames of 2–4 × 3–5 cells whose later frames partly repeat
    /// the earlier ones (positions `PositionIDs.video` on an M-RoPE model).
    public static func random(for m: ConformanceModel, seed: UInt64, grid forced: ImageGrid? = nil, video: Bool = false) -> PromptCase {
        var rng = SplitMix64(seed: seed &* 0x9E37_79B9 &+ m.seed)
        let grid = forced ?? (video ? ImageGrid(rows: 2 + rng.integer(below: 3), cols: 3 + rng.integer(below: 3), frames: 3 + rng.integer(below: 2))
            : ImageGrid(rows: 3 + rng.integer(below: 4), cols: 4 + rng.integer(below: 4)))
        let prefix = 2 + rng.integer(below: 4), suffix = 2 + rng.integer(below: 3)
        return RandomCase.make(config: m.config, name: "conform-s\(seed)-\(grid.description)", grid: grid, prefix: prefix, suffix: suffix,
                               visual: .features(width: m.visionDim), positions: m.config.mropeSection == nil ? .contiguous : .multimodal,
                               decodeSteps: 3, similarityWidth: 8, clsFeature: true, rng: &rng)
    }

    /// The case with every position id raised by `offset`.
    static func shifted(_ c: PromptCase, by offset: Int) -> PromptCase {
        var out = c
        out.positions = PositionIDs(axes: c.positions.axes.map { $0.map { $0 + offset } })
        out.name += "+pos\(offset)"
        return out
    }

    /// The case with `extra` more text tokens before the image (positions laid out again).
    static func longerPrefix(_ c: PromptCase, extra: Int, vocab: Int, seed: UInt64) -> PromptCase {
        var rng = SplitMix64(seed: seed)
        var out = c
        out.prefixTokens = (0..<extra).map { _ in rng.integer(below: vocab) } + c.prefixTokens
        out.positions = c.positions.isMultimodal
            ? (c.grid.isVideo ? .video(prefix: out.prefixTokens.count, grid: c.grid, temporalStride: 2, suffix: c.suffixTokens.count)
                : .multimodal(prefix: out.prefixTokens.count, grid: c.grid, suffix: c.suffixTokens.count))
            : .contiguous(out.sequenceLength)
        out.name += "+prefix\(extra)"
        return out
    }

    /// The weights with every query projection (and bias) zero: all attention is uniform over
    /// the causally visible keys, so every visual candidate gets the same score.
    static func uniformAttention(_ w: ModelWeights) -> ModelWeights {
        var out = w
        for l in out.layers.indices {
            out.layers[l].q = Matrix(rows: w.layers[l].q.rows, cols: w.layers[l].q.cols,
                                     values: [Float](repeating: 0, count: w.layers[l].q.values.count))
            out.layers[l].qBias = w.layers[l].qBias.map { [Float](repeating: 0, count: $0.count) }
        }
        return out
    }
}
