import Foundation

/// Weights of one decoder layer, by their Hugging Face names
/// (`model.layers.N.self_attn.q_proj.weight`, ...). Projections are `[out, in]` as in HF:
/// y = W x + b.
public struct LayerWeights: Sendable {
    public var inputNorm: [Float]           // input_layernorm.weight [d]
    public var q: Matrix                    // self_attn.q_proj.weight [H·dh, d]
    public var k: Matrix                    // self_attn.k_proj.weight [Hkv·dh, d]
    public var v: Matrix                    // self_attn.v_proj.weight [Hkv·dh, d]
    public var qBias: [Float]?              // self_attn.q_proj.bias [H·dh] (Qwen2)
    public var kBias: [Float]?
    public var vBias: [Float]?
    public var o: Matrix                    // self_attn.o_proj.weight [d, H·dh]
    public var postNorm: [Float]            // post_attention_layernorm.weight [d]
    public var gate: Matrix                 // mlp.gate_proj.weight [m, d]
    public var up: Matrix                   // mlp.up_proj.weight [m, d]
    public var down: Matrix                 // mlp.down_proj.weight [d, m]

    public init(inputNorm: [Float], q: Matrix, k: Matrix, v: Matrix, qBias: [Float]?, kBias: [Float]?, vBias: [Float]?,
                o: Matrix, postNorm: [Float], gate: Matrix, up: Matrix, down: Matrix) {
        self.inputNorm = inputNorm
        self.q = q
        self.k = k
        self.v = v
        self.qBias = qBias
        self.kBias = kBias
        self.vBias = vBias
        self.o = o
        self.postNorm = postNorm
        self.gate = gate
        self.up = up
        self.down = down
    }
}

/// The multimodal projector: `linear_2(GELU(linear_1(n(x))))`, GELU exact (erf), where
/// `n` is the identity (LLaVA) or, for Qwen2.5-VL's merger, an RMSNorm (ε = 1e-6, weight
/// `featureNorm`) of each `featureNorm.count`-wide chunk of the feature row (one chunk per
/// patch of the 2×2 merge unit).
public struct ProjectorWeights: Sendable {
    public var linear1: Matrix              // [h, d_vision]
    public var bias1: [Float]?              // [h]
    public var linear2: Matrix              // [d, h]
    public var bias2: [Float]?              // [d]
    /// Qwen2.5-VL merger `ln_q.weight` [d_vision / unit]; nil for LLaVA.
    public var featureNorm: [Float]?
    /// Width of the vision features the projector takes.
    public var visionDim: Int { linear1.cols }
    /// ε of the feature RMSNorm (transformers' `Qwen2_5_VLPatchMerger`).
    public static let featureNormEps = 1e-6

    public init(linear1: Matrix, bias1: [Float]?, linear2: Matrix, bias2: [Float]?, featureNorm: [Float]? = nil) {
        self.linear1 = linear1
        self.bias1 = bias1
        self.linear2 = linear2
        self.bias2 = bias2
        self.featureNorm = featureNorm
    }

    /// One-line description (`inspect`).
    public var summary: String {
        let core = "linear \(linear1.cols) -> \(linear1.rows), GELU, linear -> \(linear2.rows)"
        guard let n = featureNorm else { return "LLaVA: " + core }
        return "Qwen2.5-VL merger: RMSNorm of each \(n.count)-wide patch feature, " + core
    }
}

/// How a checkpoint's weight matrices are held in memory.
public enum WeightStorage: String, Sendable {
    /// Every tensor widened to f32 arrays (what the reference decoder needs).
    case float32
    /// BF16 projection, embedding and LM-head matrices stay in the memory-mapped file (pages
    /// read on first touch, no f32 copy); the fast decoder widens them tile by tile as it
    /// multiplies them (packing the tiles for its packed-weight kernel on the vector paths). Other
    /// dtypes and the small tensors (norms, biases, projector) are widened as usual.
    case mappedBF16
}

/// All weights of a model, widened to f32, with the config they were checked against.
public struct ModelWeights: Sendable {
    public var config: ModelConfig
    public var embedding: Matrix            // model.embed_tokens.weight [V, d]
    public var layers: [LayerWeights]
    public var finalNorm: [Float]           // model.norm.weight [d]
    public var lmHead: Matrix               // lm_head.weight [V, d], or the embedding when tied
    public var projector: ProjectorWeights?

    public init(config: ModelConfig, embedding: Matrix, layers: [LayerWeights], finalNorm: [Float], lmHead: Matrix,
                projector: ProjectorWeights?) {
        self.config = config
        self.embedding = embedding
        self.layers = layers
        self.finalNorm = finalNorm
        self.lmHead = lmHead
        self.projector = projector
    }

    /// Loads `config.json` and the weights of a model folder, checking every tensor's
    /// shape against the config.
    public static func load(directory: URL, storage: WeightStorage = .float32) throws -> ModelWeights {
        let config = try ModelConfig.load(from: directory.appendingPathComponent("config.json"))
        let ckpt = try Checkpoint(directory: directory)
        return try load(config: config, checkpoint: ckpt, storage: storage)
    }

    /// The weights of `ckpt` read in its `CheckpointLayout`; vision-tower tensors are not read.
    public static func load(config c: ModelConfig, checkpoint ckpt: Checkpoint, storage: WeightStorage = .float32) throws -> ModelWeights {
        let layout = try ckpt.layout()
        let prefix = layout.languageModel
        func mat(_ name: String, _ rows: Int, _ cols: Int) throws -> Matrix {
            try ckpt.matrix(name, rows: rows, cols: cols, storage: storage)
        }
        func small(_ name: String, _ rows: Int, _ cols: Int) throws -> Matrix {
            try ckpt.matrix(name, rows: rows, cols: cols, storage: .float32)
        }
        func vec(_ name: String, _ n: Int) throws -> [Float] { try ckpt.floats(name, shape: [n]) }
        let d = c.hiddenSize, m = c.intermediateSize
        var layers: [LayerWeights] = []
        for l in 0..<c.layers {
            let p = "\(prefix)layers.\(l)."
            func bias(_ proj: String, _ n: Int) throws -> [Float]? {
                let name = p + "self_attn.\(proj).bias"
                if c.attentionBias { return try vec(name, n) }
                if ckpt.has(name) {
                    throw InputError(.shapeMismatch, file: ckpt.file(of: name) ?? ckpt.directory.path, object: name,
                                     "the config says the attention has no bias")
                }
                return nil
            }
            layers.append(LayerWeights(
                inputNorm: try vec(p + "input_layernorm.weight", d),
                q: try mat(p + "self_attn.q_proj.weight", c.queryWidth, d),
                k: try mat(p + "self_attn.k_proj.weight", c.kvWidth, d),
                v: try mat(p + "self_attn.v_proj.weight", c.kvWidth, d),
                qBias: try bias("q_proj", c.queryWidth),
                kBias: try bias("k_proj", c.kvWidth),
                vBias: try bias("v_proj", c.kvWidth),
                o: try mat(p + "self_attn.o_proj.weight", d, c.queryWidth),
                postNorm: try vec(p + "post_attention_layernorm.weight", d),
                gate: try mat(p + "mlp.gate_proj.weight", m, d),
                up: try mat(p + "mlp.up_proj.weight", m, d),
                down: try mat(p + "mlp.down_proj.weight", d, m)))
        }
        // Any tensor of a layer past the last one means the config and the weights disagree.
        if let extraLayer = ckpt.tensorNames.first(where: { name in
            guard name.hasPrefix("\(prefix)layers.") else { return false }
            let index = name.dropFirst("\(prefix)layers.".count).prefix { $0.isNumber }
            return Int(index).map { $0 >= c.layers } ?? false
        }) {
            throw InputError(.shapeMismatch, file: ckpt.file(of: extraLayer)!, object: extraLayer,
                             "the checkpoint has more layers than num_hidden_layers = \(c.layers)")
        }
        let embedding = try mat(prefix + "embed_tokens.weight", c.vocabSize, d)
        let lmHead: Matrix
        if c.tieWordEmbeddings {
            lmHead = embedding
        } else {
            guard ckpt.has(layout.lmHead) else {
                throw InputError(.missingTensor, file: ckpt.directory.path, object: layout.lmHead,
                                 "tie_word_embeddings is false but there is no LM head (layout \(layout.name))")
            }
            lmHead = try mat(layout.lmHead, c.vocabSize, d)
        }
        var projector: ProjectorWeights?
        if let names = layout.projector, ckpt.has(names.linear1) {
            let bias = { (w: String) in w.replacingOccurrences(of: ".weight", with: ".bias") }
            let i1 = try ckpt.info(names.linear1), i2 = try ckpt.info(names.linear2)
            guard i1.shape.count == 2, i1.shape[0] > 0, i1.shape[1] > 0 else {
                throw InputError(.shapeMismatch, file: ckpt.file(of: names.linear1)!, object: names.linear1,
                                 "shape \(i1.shape), the projector needs [hidden, vision_dim]")
            }
            let (h, dv) = (i1.shape[0], i1.shape[1])
            guard i2.shape == [d, h] else {
                throw InputError(.shapeMismatch, file: ckpt.file(of: names.linear2)!, object: names.linear2,
                                 "shape \(i2.shape), the projector needs [\(d), \(h)] (hidden_size, linear_1's outputs)")
            }
            var featureNorm: [Float]?
            if let n = names.featureNorm {
                let info = try ckpt.info(n)
                guard info.shape.count == 1, info.shape[0] > 0, dv % info.shape[0] == 0 else {
                    throw InputError(.shapeMismatch, file: ckpt.file(of: n) ?? ckpt.directory.path, object: n,
                                     "shape \(info.shape), must be one patch feature wide and divide the merger's input width \(dv)")
                }
                featureNorm = try vec(n, info.shape[0])
            }
            projector = ProjectorWeights(
                linear1: try small(names.linear1, h, dv),
                bias1: ckpt.has(bias(names.linear1)) ? try vec(bias(names.linear1), h) : nil,
                linear2: try small(names.linear2, d, h),
                bias2: ckpt.has(bias(names.linear2)) ? try vec(bias(names.linear2), d) : nil,
                featureNorm: featureNorm)
        }
        return ModelWeights(config: c, embedding: embedding, layers: layers,
                            finalNorm: try vec(prefix + "norm.weight", d), lmHead: lmHead, projector: projector)
    }
}

extension Matrix {
    /// The same values as an f32 matrix (mapped bf16 widened exactly; f32 returned as is).
    public func widened() -> Matrix {
        guard isMapped else { return self }
        var out = [Float](repeating: 0, count: rows * cols)
        out.withUnsafeMutableBufferPointer { widenRows(0, rows, into: $0.baseAddress!) }
        return Matrix(rows: rows, cols: cols, values: out)
    }
}

extension ModelWeights {
    /// Layer `l` alone as a one-layer model in f32 (mapped bf16 widened), with a one-token
    /// vocabulary and no projector: what a decoder needs to run that layer, or score with it,
    /// on given inputs (the layer-wise check of real-size models).
    public func layerView(_ l: Int) -> ModelWeights {
        var c = config
        c.layers = 1
        c.vocabSize = 1
        var w = layers[l]
        for path in [\LayerWeights.q, \.k, \.v, \.o, \.gate, \.up, \.down] { w[keyPath: path] = w[keyPath: path].widened() }
        let none = Matrix(rows: 1, cols: c.hiddenSize, values: [Float](repeating: 0, count: c.hiddenSize))
        return ModelWeights(config: c, embedding: none, layers: [w], finalNorm: finalNorm, lmHead: none, projector: nil)
    }
}
