import Foundation
import RerouteModel

/// Random prompt cases from a seeded generator: the one case generator of the goldens, the
/// conformance suite, the benchmarks and the tests.
public enum RandomCase {
    /// What the image of a case is.
    public enum Visual: Sendable {
        /// Vision-encoder features of this width (the model's projector maps them).
        case features(width: Int)
        /// LLM-width embeddings, given directly.
        case embeddings

        var isFeatures: Bool { if case .features = self { true } else { false } }
    }

    /// How the position ids are laid out.
    public enum Positions: Sendable {
        /// 0 ..< S.
        case contiguous
        /// Increasing with gaps of 1–3 (drawn after everything else).
        case gapped
        /// Qwen2-VL's 3-D (t, h, w) ids (`PositionIDs.multimodal`), or a video's
        /// (`PositionIDs.video`, temporal stride 2 as Qwen2.5-VL at 2 fps) when the grid has frames.
        case multimodal
    }

    /// A case of `prefix` text tokens, an image (or video) of `grid`, `suffix` text tokens, drawn from
    /// `rng` in a fixed order: the visual values (standard normals), the CLS attention (a
    /// softmax of standard normals), the similarity features (`similarityWidth` normals per
    /// token), the prefix and suffix token ids (uniform below the vocabulary), then gapped
    /// positions if asked. Nüwa's vision-side inputs are always included; with `clsFeature`, a
    /// CLS token's feature too (VisionZip's), drawn last so the rest is drawn as without it.
    public static func make(config c: ModelConfig, name: String, grid: ImageGrid, prefix: Int, suffix: Int, visual: Visual,
                            positions: Positions = .contiguous, decodeSteps: Int = 3, similarityWidth: Int = 16,
                            clsFeature: Bool = false, rng: inout SplitMix64) -> PromptCase {
        let n = grid.count
        let width = if case .features(let w) = visual { w } else { c.hiddenSize }
        var drawn = (0..<(n * width)).map { _ in Float(rng.normal()) }
        let logits = (0..<n).map { _ in rng.normal() }
        let total = logits.map { exp($0) }.reduce(0, +)
        let cls = logits.map { Float(exp($0) / total) }
        let sim = Matrix(rows: n, cols: similarityWidth, values: (0..<(n * similarityWidth)).map { _ in Float(rng.normal()) })
        let prefixTokens = (0..<prefix).map { _ in rng.integer(below: c.vocabSize) }
        let suffixTokens = (0..<suffix).map { _ in rng.integer(below: c.vocabSize) }
        let s = prefix + n + suffix
        let ids: PositionIDs? = switch positions {
        case .contiguous: nil
        case .multimodal: grid.isVideo ? .video(prefix: prefix, grid: grid, temporalStride: 2, suffix: suffix)
            : .multimodal(prefix: prefix, grid: grid, suffix: suffix)
        case .gapped: PositionIDs(gappedPositions(count: s, rng: &rng))
        }
        // A video repeats itself: each cell of a later frame is, with probability 1/2, the same
        // cell of the frame before plus noise of 0.1 (drawn last, so images draw as before).
        if grid.isVideo {
            let cells = grid.cellsPerFrame
            for j in cells..<n where rng.integer(below: 2) == 0 {
                for e in 0..<width { drawn[j * width + e] = drawn[(j - cells) * width + e] + Float(0.1 * rng.normal()) }
            }
        }
        let values = Matrix(rows: n, cols: width, values: drawn)
        let clsRow: [Float]? = clsFeature && visual.isFeatures ? (0..<width).map { _ in Float(rng.normal()) } : nil
        let image: VisualInput = visual.isFeatures ? .features(values) : .embeddings(values)
        return PromptCase(name: name, prefixTokens: prefixTokens, suffixTokens: suffixTokens, visual: image, grid: grid, positions: ids,
                          decodeSteps: decodeSteps, visionSide: VisionSideInputs(clsAttention: cls, similarityFeatures: sim, clsFeature: clsRow))
    }

    /// The same from a seed.
    public static func make(config c: ModelConfig, name: String, grid: ImageGrid, prefix: Int, suffix: Int, visual: Visual,
                            positions: Positions = .contiguous, decodeSteps: Int = 3, similarityWidth: Int = 16, clsFeature: Bool = false,
                            seed: UInt64) -> PromptCase {
        var rng = SplitMix64(seed: seed)
        return make(config: c, name: name, grid: grid, prefix: prefix, suffix: suffix, visual: visual, positions: positions,
                    decodeSteps: decodeSteps, similarityWidth: similarityWidth, clsFeature: clsFeature, rng: &rng)
    }

    /// 0, then steps of 1–3.
    static func gappedPositions(count: Int, rng: inout SplitMix64) -> [Int] {
        var out: [Int] = [], next = 0
        for _ in 0..<count {
            out.append(next)
            next += 1 + rng.integer(below: 3)
        }
        return out
    }
}
