import Foundation

/// What a key missing from a `config.json` means: the defaults of the transformers config
/// class that reads it (transformers 5.24; SPEC.md §3.1). Published configs rely on them:
/// `llava-hf/llava-1.5-7b-hf`'s `text_config` names only five keys.
public struct ConfigDefaults: Sendable, Equatable {
    /// The transformers class whose defaults these are (`LlamaConfig`, ...).
    public var configClass: String
    public var family: ModelFamily
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    /// nil: `num_key_value_heads` defaults to `num_attention_heads`.
    public var kvHeads: Int?
    public var maxPositionEmbeddings: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var vocabSize: Int
    /// Qwen2-VL / Qwen2.5-VL: the M-RoPE section when the config gives none.
    public var mropeSection: [Int]?

    /// `LlamaConfig()`: LLaMA / Vicuna, the text model of `llava` and `llava_llama`.
    public static let llama = ConfigDefaults(
        configClass: "LlamaConfig", family: .llama, hiddenSize: 4096, intermediateSize: 11008, layers: 32, heads: 32,
        kvHeads: nil, maxPositionEmbeddings: 2048, rmsNormEps: 1e-6, ropeTheta: 10000, vocabSize: 32000, mropeSection: nil)
    /// `Qwen2Config()` (its `num_key_value_heads` defaults to 32 whatever H is).
    public static let qwen2 = ConfigDefaults(
        configClass: "Qwen2Config", family: .qwen2, hiddenSize: 4096, intermediateSize: 22016, layers: 32, heads: 32,
        kvHeads: 32, maxPositionEmbeddings: 32768, rmsNormEps: 1e-6, ropeTheta: 10000, vocabSize: 151936, mropeSection: nil)
    /// `Qwen2_5_VLTextConfig()` (the same values as `Qwen2VLTextConfig()`).
    public static let qwen2_5_vl = ConfigDefaults(
        configClass: "Qwen2_5_VLTextConfig", family: .qwen2, hiddenSize: 8192, intermediateSize: 29568, layers: 80, heads: 64,
        kvHeads: 8, maxPositionEmbeddings: 32768, rmsNormEps: 1e-5, ropeTheta: 1_000_000, vocabSize: 152064, mropeSection: [16, 24, 24])
    /// `Qwen2VLTextConfig()`.
    public static let qwen2_vl: ConfigDefaults = {
        var d = qwen2_5_vl
        d.configClass = "Qwen2VLTextConfig"
        return d
    }()
}

/// How a `config.json` was read: which architecture and config class, and which keys took
/// their class's default (named by `reroute inspect`).
public struct ConfigReading: Sendable, Equatable {
    public var config: ModelConfig
    /// The outer `model_type` (`llava`, `qwen2_5_vl`, `llava_llama`, `llama`, ...).
    public var modelType: String
    /// `architectures[0]` when the file names one.
    public var architecture: String?
    /// Where the language model's keys were read: `text_config` or the top level.
    public var textKeys: String
    public var defaults: ConfigDefaults
    /// Keys absent from the file, with the default each took, in SPEC order.
    public var defaulted: [(key: String, value: String)]

    public static func == (a: ConfigReading, b: ConfigReading) -> Bool {
        a.config == b.config && a.modelType == b.modelType && a.architecture == b.architecture && a.textKeys == b.textKeys
            && a.defaults == b.defaults && a.defaulted.map(\.key) == b.defaulted.map(\.key)
            && a.defaulted.map(\.value) == b.defaulted.map(\.value)
    }
}
