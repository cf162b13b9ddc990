import Foundation

/// The decoder families the suite implements (SPEC.md §2).
public enum ModelFamily: String, Sendable, Codable, CaseIterable {
    /// LLaMA / Vicuna (LLaVA-1.5's language model): no attention bias unless `attention_bias`.
    case llama
    /// Qwen2 / Qwen2.5 (Qwen2-VL's and Qwen2.5-VL's language model): q/k/v carry a bias.
    case qwen2
}

/// Shape and constants of a LLaMA / Qwen2 decoder, read from a Hugging Face `config.json`.
///
/// Invariants (checked by `validate`): all sizes positive, `heads % kvHeads == 0`,
/// `headDim` even (RoPE rotates pairs), `rmsNormEps > 0`, `ropeTheta > 1`.
public struct ModelConfig: Sendable, Equatable, Codable {
    public var family: ModelFamily
    /// d: width of the residual stream.
    public var hiddenSize: Int
    /// L: number of decoder layers.
    public var layers: Int
    /// H: query heads.
    public var heads: Int
    /// H_kv: key/value heads (GQA when < H).
    public var kvHeads: Int
    /// d_head: width of one head (HF `head_dim`, default d / H).
    public var headDim: Int
    /// m: SwiGLU intermediate width.
    public var intermediateSize: Int
    /// ε of RMSNorm.
    public var rmsNormEps: Double
    /// θ of RoPE: inverse frequency i is θ^(-2i/d_head).
    public var ropeTheta: Double
    /// V: vocabulary size.
    public var vocabSize: Int
    /// The LM head reuses the token embedding matrix.
    public var tieWordEmbeddings: Bool
    /// q/k/v projections carry a bias (always for Qwen2; `attention_bias` for LLaMA).
    public var attentionBias: Bool
    /// Largest position the checkpoint was trained for (informational; not enforced).
    public var maxPositionEmbeddings: Int
    /// Qwen2-VL / Qwen2.5-VL multimodal RoPE (SPEC.md §2.4): the numbers of rotary
    /// frequencies (of d_h/2) that read the t, h and w position axes, in that order; nil for
    /// 1-D RoPE.
    public var mropeSection: [Int]?

    public init(family: ModelFamily, hiddenSize: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int? = nil,
                intermediateSize: Int, rmsNormEps: Double, ropeTheta: Double, vocabSize: Int,
                tieWordEmbeddings: Bool, attentionBias: Bool? = nil, maxPositionEmbeddings: Int = 4096, mropeSection: [Int]? = nil) {
        self.family = family
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim ?? (heads > 0 ? hiddenSize / heads : 0)
        self.intermediateSize = intermediateSize
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.vocabSize = vocabSize
        self.tieWordEmbeddings = tieWordEmbeddings
        self.attentionBias = attentionBias ?? (family == .qwen2)
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.mropeSection = mropeSection
    }

    /// For each rotary frequency j in `0 ..< d_h/2`, the position axis it reads: 0 for 1-D
    /// RoPE; for M-RoPE contiguous chunks of `mropeSection` sizes read axes t, h, w (as
    /// transformers' `apply_multimodal_rotary_pos_emb`, not interleaved).
    public var ropeFrequencyAxes: [Int] {
        guard let section = mropeSection else { return Array(repeating: 0, count: headDim / 2) }
        return section.enumerated().flatMap { k, n in Array(repeating: k % 3, count: n) }
    }

    /// The position each rotary frequency of token `i` is rotated by (SPEC.md §2.4). One-axis
    /// positions are used for every frequency (so 1-D positions on an M-RoPE model behave as
    /// three equal axes, as in transformers).
    public func ropePositions(_ ids: PositionIDs, token i: Int) -> [Int] {
        let last = ids.axisCount - 1
        return ropeFrequencyAxes.map { ids.axes[min($0, last)][i] }
    }

    /// Language-model parameters the config describes (embedding, LM head unless tied, every
    /// layer's projections, norms and biases), as a Double so that no product can overflow.
    public var parameterCount: Double {
        let d = Double(hiddenSize), dh = Double(headDim), h = Double(heads), kv = Double(kvHeads), m = Double(intermediateSize)
        let attention = (h + 2 * kv) * dh * d + h * dh * d + (attentionBias ? (h + 2 * kv) * dh : 0)
        let layer = attention + 3 * m * d + 2 * d
        return Double(vocabSize) * d * (tieWordEmbeddings ? 1 : 2) + Double(layers) * layer + d
    }

    /// The model-size budget (SPEC.md §12): 2^37 parameters, twice a 72B model.
    public static let maxParameters = Double(1 << 37)

    /// Width of all query heads together, H · d_head.
    public var queryWidth: Int { heads * headDim }
    /// Width of all key (or value) heads together, H_kv · d_head.
    public var kvWidth: Int { kvHeads * headDim }
    /// Query heads per key/value head (GQA group size).
    public var groupSize: Int { heads / kvHeads }

    /// Checks the invariants; `file` names the source in the error, `keyPrefix` (e.g.
    /// `text_config.`) where in it the keys are.
    public func validate(file: String, keyPrefix: String = "") throws {
        func bad(_ key: String, _ why: String) -> InputError { InputError(.badConfig, file: file, object: keyPrefix + key, why) }
        for (key, v) in [("hidden_size", hiddenSize), ("num_hidden_layers", layers), ("num_attention_heads", heads),
                         ("num_key_value_heads", kvHeads), ("head_dim", headDim), ("intermediate_size", intermediateSize),
                         ("vocab_size", vocabSize)] where v <= 0 {
            throw bad(key, "must be positive, got \(v)")
        }
        // Caps that keep a hostile config from asking for absurd allocations.
        for (key, v, cap) in [("hidden_size", hiddenSize, 1 << 16), ("num_hidden_layers", layers, 1024),
                              ("num_attention_heads", heads, 1024), ("num_key_value_heads", kvHeads, 1024), ("intermediate_size", intermediateSize, 1 << 18),
                              ("vocab_size", vocabSize, 1 << 22), ("head_dim", headDim, 4096)] where v > cap {
            throw bad(key, "\(v) is larger than the supported maximum \(cap)")
        }
        if heads % kvHeads != 0 { throw bad("num_key_value_heads", "\(kvHeads) does not divide num_attention_heads \(heads)") }
        if headDim % 2 != 0 { throw bad("head_dim", "RoPE needs an even head dimension, got \(headDim)") }
        // One budget for the whole model, so sizes each under its cap cannot multiply into an
        // allocation the run would then refuse (computed in Double: no overflow).
        if Double(parameterCount) > Self.maxParameters {
            throw bad("num_hidden_layers", "the config describes \(parameterCount.formatted()) parameters; the supported maximum is 2^37")
        }
        if !(rmsNormEps > 0) || !rmsNormEps.isFinite { throw bad("rms_norm_eps", "must be positive and finite, got \(rmsNormEps)") }
        if !(ropeTheta > 1) || !ropeTheta.isFinite { throw bad("rope_theta", "must be finite and > 1, got \(ropeTheta)") }
        if maxPositionEmbeddings <= 0 || maxPositionEmbeddings > 1 << 30 {
            throw bad("max_position_embeddings", "must be 1…\(1 << 30), got \(maxPositionEmbeddings)")
        }
        if let s = mropeSection, s.count != 3 || s.contains(where: { $0 < 0 }) || s.reduce(0, +) != headDim / 2 {
            throw bad("rope_parameters.mrope_section", "\(s) must be 3 non-negative sizes summing to head_dim/2 = \(headDim / 2)")
        }
    }
}

extension ModelConfig {
    /// Reads a Hugging Face `config.json` (see `read(json:file:)`).
    public static func load(from url: URL) throws -> ModelConfig { try reading(from: url).config }

    /// The largest config.json read (published ones are a few KB).
    public static let maxConfigBytes = 16 << 20

    /// Reads a Hugging Face `config.json` and says how it was read.
    public static func reading(from url: URL) throws -> ConfigReading {
        try read(json: try FilePaths.readSmall(url.path, maxBytes: maxConfigBytes, what: "a config.json"), file: url.path)
    }

    /// Parses the bytes of a `config.json`; `file` names the source in errors.
    public static func parse(json data: Data, file: String) throws -> ModelConfig { try read(json: data, file: file).config }

    /// The model types read (SPEC.md §3.1), outer `model_type` first.
    public static let supportedModelTypes = ["llama", "qwen2", "llava", "llava_llama", "qwen2_5_vl", "qwen2_vl"]

    /// Parses a `config.json` as transformers reads it: `llama`, `qwen2` and original LLaVA's
    /// `llava_llama` at the top level; `llava`'s `text_config` (a LLaMA, or a Qwen2, text
    /// model); `qwen2_5_vl` / `qwen2_vl` from `text_config` (transformers 5) or the top level
    /// (the published files). A missing key takes the default of the config class that reads
    /// it (`ConfigDefaults`).
    public static func read(json data: Data, file: String) throws -> ConfigReading {
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: data) } catch {
            throw InputError(.badJSON, file: file, "not valid JSON: \(error.localizedDescription)")
        }
        guard let outer = any as? [String: Any] else { throw InputError(.badJSON, file: file, "top level is not an object") }
        guard let modelType = outer["model_type"] as? String else {
            throw InputError(.badConfig, file: file, object: "model_type", outer["model_type"] == nil ? "missing" : "expected a string")
        }
        func unsupported(_ key: String, _ type: String, _ supported: String) -> InputError {
            InputError(.unsupportedModel, file: file, object: key, "'\(type)' is not supported (supported: \(supported))")
        }
        var obj = outer
        var textKeys = "top level"
        let defaults: ConfigDefaults
        switch modelType {
        case "llama", "llava_llama": defaults = .llama
        case "qwen2": defaults = .qwen2
        case "llava", "qwen2_5_vl", "qwen2_vl":
            let raw = outer["text_config"]
            if let raw, !(raw is NSNull) {
                guard let text = raw as? [String: Any] else {
                    throw InputError(.badConfig, file: file, object: "text_config", "must be an object")
                }
                obj = text
                textKeys = "text_config"
            } else if modelType == "llava" {
                obj = [:]  // LlavaConfig builds a default LlamaConfig
                textKeys = "text_config"
            }
            if let t = obj["model_type"], !(t is String) {
                throw InputError(.badConfig, file: file, object: "text_config.model_type", "expected a string")
            }
            if modelType == "llava" {
                let textType = obj["model_type"] as? String ?? "llama"
                switch textType {
                case "llama": defaults = .llama
                case "qwen2": defaults = .qwen2
                default: throw unsupported("text_config.model_type", textType, "llama, qwen2")
                }
            } else {
                defaults = modelType == "qwen2_vl" ? .qwen2_vl : .qwen2_5_vl
                if textKeys == "text_config", let t = obj["model_type"] as? String, t != modelType + "_text" {
                    throw unsupported("text_config.model_type", t, modelType + "_text")
                }
            }
            // transformers 5 keeps tie_word_embeddings on the outer config of VLMs.
            if obj["tie_word_embeddings"] == nil || obj["tie_word_embeddings"] is NSNull, let tie = outer["tie_word_embeddings"] {
                obj["tie_word_embeddings"] = tie
            }
        default:
            throw unsupported("model_type", modelType, supportedModelTypes.joined(separator: ", "))
        }
        let family = defaults.family
        let prefix = textKeys == "text_config" ? "text_config." : ""
        let j = JSONFields(obj: obj, file: file, prefix: prefix)
        var defaulted: [(key: String, value: String)] = []
        func int(_ key: String, _ d: Int) throws -> Int {
            if let v = try j.optionalInt(key) { return v }
            // transformers fails on an explicit null size; only an absent key takes the default.
            if obj[key] is NSNull, ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"].contains(key) {
                throw InputError(.badConfig, file: file, object: prefix + key, "null; leave the key out to take \(defaults.configClass)'s default \(d)")
            }
            defaulted.append((prefix + key, "\(d)"))
            return d
        }
        func double(_ key: String, _ d: Double) throws -> Double {
            if j.has(key) { return try j.double(key) }
            defaulted.append((prefix + key, "\(d)"))
            return d
        }
        let hidden = try int("hidden_size", defaults.hiddenSize)
        let heads = try int("num_attention_heads", defaults.heads)
        let act = try j.string("hidden_act", default: "silu")
        if act != "silu" { throw InputError(.badConfig, file: file, object: prefix + "hidden_act", "only silu (SwiGLU) is supported, got '\(act)'") }
        if try j.bool("mlp_bias", default: false) {
            throw InputError(.badConfig, file: file, object: prefix + "mlp_bias", "MLP biases are not supported")
        }
        // transformers 5 nests RoPE under rope_parameters; older configs use rope_theta / rope_scaling.
        var theta: Double?
        var mropeSection: [Int]?
        func section(_ dict: [String: Any], _ at: String) throws -> [Int]? {
            guard let raw = dict["mrope_section"], !(raw is NSNull) else { return nil }
            guard let list = raw as? [NSNumber], list.allSatisfy({ $0.doubleValue == $0.doubleValue.rounded() && abs($0.doubleValue) < 1e6 }) else {
                throw InputError(.badConfig, file: file, object: at + "mrope_section", "expected a list of integers")
            }
            return list.map(\.intValue)
        }
        if let raw = obj["rope_parameters"], !(raw is NSNull), !(raw is [String: Any]) {
            throw InputError(.badConfig, file: file, object: prefix + "rope_parameters", "must be an object (rope_type, rope_theta, …)")
        }
        if let rp = obj["rope_parameters"] as? [String: Any] {
            let r = JSONFields(obj: rp, file: file, prefix: prefix + "rope_parameters.")
            if r.has("rope_theta") { theta = try r.double("rope_theta") }
            mropeSection = try section(rp, prefix + "rope_parameters.")
            let ropeType = try r.string("rope_type", default: "default")
            if ropeType != "default" && ropeType != "mrope" {
                throw InputError(.badConfig, file: file, object: prefix + "rope_parameters.rope_type", "only default RoPE is supported, got '\(ropeType)'")
            }
        }
        if theta == nil, j.has("rope_theta") { theta = try j.double("rope_theta") }
        if theta == nil { defaulted.append((prefix + "rope_theta", "\(defaults.ropeTheta)")) }
        if let scaling = obj["rope_scaling"], !(scaling is NSNull) {
            let t = ((scaling as? [String: Any])?["rope_type"] ?? (scaling as? [String: Any])?["type"]) as? String
            if t != "default" && t != "mrope" {
                throw InputError(.badConfig, file: file, object: prefix + "rope_scaling", "RoPE scaling '\(t ?? "?")' is not supported")
            }
            if mropeSection == nil, let dict = scaling as? [String: Any] { mropeSection = try section(dict, prefix + "rope_scaling.") }
        }
        if mropeSection == nil, let d = defaults.mropeSection {
            mropeSection = d
            defaulted.append((prefix + "rope_parameters.mrope_section", "\(d)"))
        }
        if family == .qwen2, try j.bool("use_sliding_window", default: false) {
            throw InputError(.badConfig, file: file, object: prefix + "use_sliding_window", "sliding-window attention is not supported")
        }
        let kvHeads = try int("num_key_value_heads", defaults.kvHeads ?? heads)
        let headDim: Int
        if let h = try j.optionalInt("head_dim") { headDim = h } else {
            headDim = heads > 0 ? hidden / heads : 0
            defaulted.append((prefix + "head_dim", "\(headDim) (hidden_size / num_attention_heads)"))
        }
        let config = ModelConfig(
            family: family,
            hiddenSize: hidden,
            layers: try int("num_hidden_layers", defaults.layers),
            heads: heads,
            kvHeads: kvHeads,
            headDim: headDim,
            intermediateSize: try int("intermediate_size", defaults.intermediateSize),
            rmsNormEps: try double("rms_norm_eps", defaults.rmsNormEps),
            ropeTheta: theta ?? defaults.ropeTheta,
            vocabSize: try int("vocab_size", defaults.vocabSize),
            tieWordEmbeddings: try j.bool("tie_word_embeddings", default: false),
            attentionBias: family == .qwen2 ? true : try j.bool("attention_bias", default: false),
            maxPositionEmbeddings: try int("max_position_embeddings", defaults.maxPositionEmbeddings),
            mropeSection: mropeSection)
        if !j.has("tie_word_embeddings") { defaulted.append((prefix + "tie_word_embeddings", "false")) }
        // Validate first: the divisibility check below divides by num_attention_heads.
        try config.validate(file: file, keyPrefix: prefix)
        if family == .llama, hidden % heads != 0, j.has("head_dim") == false {
            throw InputError(.badConfig, file: file, object: prefix + "num_attention_heads", "\(heads) does not divide hidden_size \(hidden)")
        }
        let architecture = (outer["architectures"] as? [Any])?.first as? String
        return ConfigReading(config: config, modelType: modelType, architecture: architecture, textKeys: textKeys,
                             defaults: defaults, defaulted: defaulted)
    }
}

/// Typed access to a JSON object with errors that name the file and the key.
struct JSONFields {
    let obj: [String: Any]
    let file: String
    var prefix = ""

    func has(_ key: String) -> Bool { obj[key] != nil && !(obj[key] is NSNull) }

    private func fail(_ key: String, _ why: String) -> InputError {
        InputError(.badConfig, file: file, object: prefix + key, why)
    }

    func optionalInt(_ key: String) throws -> Int? {
        guard has(key) else { return nil }
        guard let n = obj[key] as? NSNumber else { throw fail(key, "expected an integer") }
        let d = n.doubleValue
        guard d.isFinite, d == d.rounded(), abs(d) < 9.0e15 else { throw fail(key, "expected an integer, got \(n)") }
        return Int(d)
    }

    func int(_ key: String, default value: Int? = nil) throws -> Int {
        if let v = try optionalInt(key) { return v }
        if let value { return value }
        throw fail(key, "missing")
    }

    func double(_ key: String, default value: Double? = nil) throws -> Double {
        if has(key) {
            guard let n = obj[key] as? NSNumber else { throw fail(key, "not a number") }
            return n.doubleValue
        }
        if let value { return value }
        throw fail(key, "missing")
    }

    func bool(_ key: String, default value: Bool) throws -> Bool {
        guard has(key) else { return value }
        guard let b = obj[key] as? Bool else { throw fail(key, "expected true or false") }
        return b
    }

    func string(_ key: String, default value: String) throws -> String {
        guard has(key) else { return value }
        guard let s = obj[key] as? String else { throw fail(key, "expected a string") }
        return s
    }
}
