import Foundation
import RerouteFixtures
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace

/// The shipped golden traces (SPEC.md §9.4): for each tiny model, one case and every policy
/// below, produced by the scalar reference decoder. Regenerated only by
/// `reroute golden regenerate`; listed with SHA-256 in `golden/traces/MANIFEST.json`.
public enum GoldenTraces {
    public static let seed = 20_261_125
    /// Policies with a golden trace (dense, and FastV, PDrop, Nüwa, Reroute on each, DivPrune,
    /// DART, embedding-level DART, CDPruner and VisionZip at two budgets; EVS at q = 0.5 with
    /// both position rules).
    public static var policies: [RoutingPolicy] {
        [.dense, .fastV(), .fastV(k: 2, r: 0.75), .pyramidDrop(), .pyramidDrop(lambda: 0.25), .pyramidDropOriginalPositions()]
            + [Tier.t192, .t64].flatMap { t in
                [RoutingPolicy.fastVRelease(tier: t), .pyramidDropRelease(tier: t), .nuwa(tier: t),
                 .rerouteFastV(tier: t), .reroutePDrop(tier: t), .rerouteNuwa(tier: t), .divPrune(tier: t), .dartEmbed(tier: t),
                 .dart(tier: t), .cdPruner(tier: t), .visionZip(tier: t)]
            }
            + [.evs(pruningRate: 0.5), .evs(pruningRate: 0.5, recomputed: false)]
    }
    /// The golden policies for a model: all of `policies`, except that re-indexed positions
    /// are not defined for M-RoPE models (their traces keep the sliced 3-D positions), and
    /// embedding-level DART, whose engine runs M-RoPE models only, has goldens on those only;
    /// DART as published (LLaVA-1.5 and Qwen2.5-VL upstream) on the LLaMA-shaped 1-D model
    /// (no attention biases) and the M-RoPE model, which keeps the golden folder small.
    /// EVS (a video reducer of Qwen2.5-VL) has goldens on the M-RoPE model's video case, and
    /// CDPruner (whose engine prunes Qwen-VL images) on the M-RoPE model; VisionZip (LLaVA's
    /// path, 1-D) on the LLaMA-shaped model only, which keeps the folder small.
    public static func policies(for c: ModelConfig) -> [RoutingPolicy] {
        c.mropeSection == nil
            ? policies.filter { $0.selection != .dartEmbed && !(($0.selection == .dart || $0.visionZip != nil) && c.attentionBias)
                && !$0.positions.requiresMultimodal && $0.selection != .evs }
            : policies.filter { !$0.requiresOneDimensionalPositions }
    }

    /// The case of a policy's golden: the video case for video reducers (EVS), the trace case
    /// with a CLS feature for VisionZip, else the trace case.
    public static func goldenCase(for policy: RoutingPolicy, weights: ModelWeights, model: String) -> PromptCase {
        if policy.selection == .evs { return videoCase(for: weights, model: model) }
        return traceCase(for: weights, model: model, clsFeature: policy.visionZip != nil)
    }

    /// The video case (`trace-video-4x3x4-mrope`): 4 prefix tokens, a video of 4 frames of 3×4
    /// vision features (each cell of a later frame, with probability 1/2, the cell before plus
    /// noise of 0.1, so frames repeat as a video's do), 4 suffix tokens, 3 greedy steps, the 3-D
    /// positions of `PositionIDs.video` with temporal stride 2 (t_max = 6 > cols − 1, so
    /// transformers' and vLLM's text positions after the video differ). Seeded by the model name
    /// with "/video".
    public static func videoCase(for weights: ModelWeights, model: String) -> PromptCase {
        var rng = SplitMix64(seed: UInt64(seed) &+ fnv1a(model + "/video"))
        return RandomCase.make(config: weights.config, name: "trace-video-4x3x4-mrope", grid: ImageGrid(rows: 3, cols: 4, frames: 4),
                               prefix: 4, suffix: 4, visual: .features(width: weights.projector?.visionDim ?? 0), positions: .multimodal,
                               decodeSteps: 3, similarityWidth: 16, rng: &rng)
    }

    /// The traces' case for a model: 4 prefix tokens, an image of vision features (so the
    /// projector and Nüwa's stage 1 run), 4 suffix tokens, 3 greedy steps; CLS attention and
    /// similarity features for Nüwa. 1-D RoPE models: a 10×10 image, contiguous positions
    /// (`trace-10x10`). M-RoPE models: a 6×8 image (rows ≠ cols, so the h and w axes differ)
    /// with the 3-D positions of `PositionIDs.multimodal`, as transformers' `get_rope_index`
    /// (`trace-6x8-mrope`). Deterministic from the seed and the model name (SplitMix64,
    /// Box–Muller normals). With `clsFeature`, the same case with a CLS token's feature drawn
    /// after the rest (`trace-10x10-cls`), for stages that hand it to the LLM (VisionZip).
    public static func traceCase(for weights: ModelWeights, model: String, clsFeature: Bool = false) -> PromptCase {
        var rng = SplitMix64(seed: UInt64(seed) &+ fnv1a(model))
        let mrope = weights.config.mropeSection != nil
        return RandomCase.make(config: weights.config, name: (mrope ? "trace-6x8-mrope" : "trace-10x10") + (clsFeature ? "-cls" : ""),
                               grid: mrope ? ImageGrid(rows: 6, cols: 8) : ImageGrid(rows: 10, cols: 10), prefix: 4, suffix: 4,
                               visual: .features(width: weights.projector?.visionDim ?? 0), positions: mrope ? .multimodal : .contiguous,
                               decodeSteps: 3, similarityWidth: 16, clsFeature: clsFeature, rng: &rng)
    }

    /// The goldens of models too large to ship, built on demand by a tool (`golden/trained`,
    /// SPEC.md §9.4): their traces are compact (hidden states of a few rows only).
    public static let trained: [BuiltModel] = [
        BuiltModel(name: "smollm2-135m-instruct", builder: "python3 tools/make_smollm2.py", caseFile: "case-12x12.h5",
                   policies: [.fastVRelease(tier: .t192), .pyramidDropRelease(tier: .t192), .rerouteFastV(tier: .t192)]),
    ]

    /// Relative path of a golden trace: `<model>/<policy>.h5`.
    public static func relativePath(model: String, policy: String) -> String { "\(model)/\(policy).h5" }

    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}

/// A golden model built by a tool (its checkpoint is never committed) and what its goldens hold.
public struct BuiltModel: Sendable {
    /// Folder name under the built-models folder (default `.build-models`).
    public var name: String
    /// The command that builds the folder (checkpoint and case).
    public var builder: String
    /// The case file in the model folder; the goldens run it with one greedy step, so they
    /// store two rows of logits rather than one per step.
    public var caseFile: String
    public var policies: [RoutingPolicy]
    /// Greedy steps of the golden run.
    public var decodeSteps = 1

    /// The rows whose hidden states the goldens store: the first (the attention sink every
    /// score competes with) and the last (the row whose query gives every last-row score and
    /// whose state gives the logits).
    public func storedRows(sequenceLength s: Int) -> [Int] { s > 1 ? [0, s - 1] : [0] }

    /// The golden case: the model folder's case file, with `decodeSteps` greedy steps.
    public func goldenCase(in directory: URL) throws -> PromptCase {
        var c = try PromptCaseIO.read(file: directory.appendingPathComponent(caseFile).path)
        c.decodeSteps = min(c.decodeSteps, decodeSteps)
        return c
    }
}
