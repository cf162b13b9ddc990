import Foundation

/// Where a checkpoint keeps the language model, its LM head, the multimodal projector and
/// the vision tower (SPEC.md §3.2): the tensor-name conventions of the checkpoints users
/// download, recognised from the tensor names.
public struct CheckpointLayout: Sendable, Equatable {
    /// Short name printed by `inspect` (`llava-hf`, `qwen2.5-vl`, ...).
    public var name: String
    /// Who writes checkpoints with these names.
    public var writtenBy: String
    /// Prefix of `embed_tokens.weight`, `layers.N.…` and `norm.weight`.
    public var languageModel: String
    /// The untied LM head.
    public var lmHead: String
    /// The projector's tensors, if this layout has one.
    public var projector: ProjectorNames?
    /// Prefixes of the vision tower's tensors: recognised, never read (the suite starts from
    /// vision features or embeddings).
    public var visionTower: [String]

    /// Names of a projector's tensors.
    public struct ProjectorNames: Sendable, Equatable {
        /// `linear_1` / `linear_2` weights (biases: the same names with `.bias`).
        public var linear1: String, linear2: String
        /// Qwen2.5-VL's `merger.ln_q.weight`, the RMSNorm of each patch feature; nil for LLaVA.
        public var featureNorm: String?
    }

    static func llavaProjector(_ p: String) -> ProjectorNames {
        ProjectorNames(linear1: p + "linear_1.weight", linear2: p + "linear_2.weight", featureNorm: nil)
    }
    static func merger(_ p: String) -> ProjectorNames {
        ProjectorNames(linear1: p + "mlp.0.weight", linear2: p + "mlp.2.weight", featureNorm: p + "ln_q.weight")
    }

    /// A `LlamaForCausalLM` / `Qwen2ForCausalLM`, with the LLaVA projector optionally in
    /// `mm_projector.safetensors`.
    public static let causalLM = CheckpointLayout(
        name: "causal-lm", writtenBy: "LlamaForCausalLM / Qwen2ForCausalLM save_pretrained",
        languageModel: "model.", lmHead: "lm_head.weight", projector: llavaProjector("multi_modal_projector."), visionTower: [])
    /// `LlavaForConditionalGeneration` as `save_pretrained` writes it (transformers 4 and 5)
    /// and as llava-hf publishes it.
    public static let llavaHF = CheckpointLayout(
        name: "llava-hf", writtenBy: "LlavaForConditionalGeneration save_pretrained (the Hub's llava-hf checkpoints)",
        languageModel: "language_model.model.", lmHead: "language_model.lm_head.weight",
        projector: llavaProjector("multi_modal_projector."), visionTower: ["vision_tower."])
    /// `LlavaForConditionalGeneration` under transformers 5's module names (a saved
    /// `state_dict()`).
    public static let llavaHFModules = CheckpointLayout(
        name: "llava-hf-modules", writtenBy: "LlavaForConditionalGeneration state_dict() (transformers ≥ 4.52 module names)",
        languageModel: "model.language_model.", lmHead: "lm_head.weight",
        projector: llavaProjector("model.multi_modal_projector."), visionTower: ["model.vision_tower."])
    /// Original LLaVA (`LlavaLlamaForCausalLM`, `model_type` `llava_llama`).
    public static let llavaOriginal = CheckpointLayout(
        name: "llava-original", writtenBy: "haotian-liu/LLaVA LlavaLlamaForCausalLM",
        languageModel: "model.", lmHead: "lm_head.weight",
        projector: ProjectorNames(linear1: "model.mm_projector.0.weight", linear2: "model.mm_projector.2.weight", featureNorm: nil),
        visionTower: ["model.vision_tower."])
    /// `Qwen2_5_VLForConditionalGeneration` (and Qwen2-VL) as published and as
    /// `save_pretrained` writes it; the vision merger is the projector.
    public static let qwenVL = CheckpointLayout(
        name: "qwen2.5-vl", writtenBy: "Qwen2_5_VLForConditionalGeneration save_pretrained (the Hub's Qwen checkpoints)",
        languageModel: "model.", lmHead: "lm_head.weight", projector: merger("visual.merger."), visionTower: ["visual."])
    /// `Qwen2_5_VLForConditionalGeneration` under transformers 5's module names.
    public static let qwenVLModules = CheckpointLayout(
        name: "qwen2.5-vl-modules", writtenBy: "Qwen2_5_VLForConditionalGeneration state_dict() (transformers ≥ 4.52 module names)",
        languageModel: "model.language_model.", lmHead: "lm_head.weight", projector: merger("model.visual.merger."),
        visionTower: ["model.visual."])

    /// The layout of a checkpoint with these tensor names: by where `embed_tokens.weight` is,
    /// then (for `model.`) by the vision tensors present. `directory` names the folder in the
    /// error when no layout fits.
    public static func detect(_ has: (String) -> Bool, names: [String], directory: String) throws -> CheckpointLayout {
        if has("model.language_model.embed_tokens.weight") {
            return names.contains { $0.hasPrefix("model.visual.") } ? qwenVLModules : llavaHFModules
        }
        if has("language_model.model.embed_tokens.weight") { return llavaHF }
        if has("model.embed_tokens.weight") {
            if names.contains(where: { $0.hasPrefix("visual.") }) { return qwenVL }
            if has("model.mm_projector.0.weight") || names.contains(where: { $0.hasPrefix("model.vision_tower.") }) { return llavaOriginal }
            return causalLM
        }
        throw InputError(.missingTensor, file: directory, object: "model.embed_tokens.weight",
                         "no token embedding under any known prefix (model., language_model.model., model.language_model.)")
    }

    /// What the decoder does with a tensor of this layout.
    public enum Role: String, Sendable, Codable { case languageModel = "language model", projector, visionTower = "vision tower (skipped)", unrecognised = "unrecognised (not read)" }

    public func role(of name: String) -> Role {
        if let p = projector {
            let parts = [p.linear1, p.linear2, p.featureNorm].compactMap { $0 }
            if parts.contains(where: { name == $0 || name == $0.replacingOccurrences(of: ".weight", with: ".bias") }) { return .projector }
        }
        if name == lmHead || name.hasPrefix(languageModel + "layers.") || name == languageModel + "embed_tokens.weight"
            || name == languageModel + "norm.weight" { return .languageModel }
        if visionTower.contains(where: { name.hasPrefix($0) }) { return .visionTower }
        return .unrecognised
    }
}
