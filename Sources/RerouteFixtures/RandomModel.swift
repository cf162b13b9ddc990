import RerouteModel

/// Random models from a seed (goldens' companions, benchmarks, conformance, tests; no file
/// needed): weights of any full `ModelConfig` (head dim included).
/// Matrices uniform in ±sqrt(3/fan_in) (variance 1/fan_in), norms 1 ± 0.1, biases ± 0.1,
/// embeddings ± 0.5. SplitMix64, so the same seed gives the same model everywhere.
public enum RandomModel {
    public static func weights(_ c: ModelConfig, visionDim: Int? = nil, seed: UInt64) -> ModelWeights {
        var rng = SplitMix64(seed: seed)
        func uniform(_ n: Int, scale: Float) -> [Float] {
            (0..<n).map { _ in Float(Int64(bitPattern: rng.next()) >> 40) / Float(1 << 23) * scale }
        }
        func mat(_ r: Int, _ cols: Int) -> Matrix { Matrix(rows: r, cols: cols, values: uniform(r * cols, scale: (3 / Float(cols)).squareRoot())) }
        func norm(_ n: Int) -> [Float] { uniform(n, scale: 0.1).map { 1 + $0 } }
        let layers = (0..<c.layers).map { _ in
            LayerWeights(inputNorm: norm(c.hiddenSize), q: mat(c.queryWidth, c.hiddenSize), k: mat(c.kvWidth, c.hiddenSize),
                         v: mat(c.kvWidth, c.hiddenSize), qBias: c.attentionBias ? uniform(c.queryWidth, scale: 0.1) : nil,
                         kBias: c.attentionBias ? uniform(c.kvWidth, scale: 0.1) : nil,
                         vBias: c.attentionBias ? uniform(c.kvWidth, scale: 0.1) : nil, o: mat(c.hiddenSize, c.queryWidth),
                         postNorm: norm(c.hiddenSize), gate: mat(c.intermediateSize, c.hiddenSize),
                         up: mat(c.intermediateSize, c.hiddenSize), down: mat(c.hiddenSize, c.intermediateSize))
        }
        let embedding = Matrix(rows: c.vocabSize, cols: c.hiddenSize, values: uniform(c.vocabSize * c.hiddenSize, scale: 0.5))
        let projector = visionDim.map { dv in
            ProjectorWeights(linear1: mat(c.hiddenSize, dv), bias1: uniform(c.hiddenSize, scale: 0.1), linear2: mat(c.hiddenSize, c.hiddenSize),
                             bias2: uniform(c.hiddenSize, scale: 0.1))
        }
        return ModelWeights(config: c, embedding: embedding, layers: layers, finalNorm: norm(c.hiddenSize),
                            lmHead: c.tieWordEmbeddings ? embedding : mat(c.vocabSize, c.hiddenSize), projector: projector)
    }

    /// A random small configuration for property tests: LLaMA or Qwen2 (q/k/v bias), MHA or
    /// GQA, head dims that are not powers of two (6–14, even for RoPE), `layers` layers, and a
    /// third of the time M-RoPE with a random section (θ = 100, so the few image positions
    /// turn every chunk visibly).
    public static func config(layers: Int, rng: inout SplitMix64) -> ModelConfig {
        let headDim = [6, 8, 10, 12, 14][rng.integer(below: 5)]
        let kvHeads = 1 + rng.integer(below: 2)
        let heads = kvHeads * (1 + rng.integer(below: 3))
        let family: ModelFamily = rng.integer(below: 2) == 0 ? .qwen2 : .llama
        var c = ModelConfig(family: family, hiddenSize: 24 + 8 * rng.integer(below: 3), layers: layers, heads: heads, kvHeads: kvHeads,
                            headDim: headDim, intermediateSize: 40 + rng.integer(below: 30), rmsNormEps: 1e-6, ropeTheta: 10000,
                            vocabSize: 64, tieWordEmbeddings: rng.integer(below: 2) == 0)
        if rng.integer(below: 3) == 0 {
            let half = headDim / 2, t = rng.integer(below: half + 1), h = rng.integer(below: half - t + 1)
            c.mropeSection = [t, h, half - t - h]
            c.ropeTheta = 100
        }
        return c
    }
}
