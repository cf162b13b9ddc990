import RerouteModel

/// Random weights of any shape from a seed (benchmarks and tests; no file needed).
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

    /// A case of `text` tokens around an image of `grid`, embeddings given directly, with
    /// vision-side inputs, contiguous positions.
    public static func promptCase(_ c: ModelConfig, grid: ImageGrid, prefix: Int, suffix: Int, decodeSteps: Int, seed: UInt64) -> PromptCase {
        var rng = SplitMix64(seed: seed)
        let n = grid.count
        let emb = Matrix(rows: n, cols: c.hiddenSize, values: (0..<(n * c.hiddenSize)).map { _ in Float(rng.normal()) })
        let cls = (0..<n).map { _ in Float(rng.uniform()) }
        let sim = Matrix(rows: n, cols: 16, values: (0..<(n * 16)).map { _ in Float(rng.normal()) })
        return PromptCase(name: "bench", prefixTokens: (0..<prefix).map { _ in rng.integer(below: c.vocabSize) },
                          suffixTokens: (0..<suffix).map { _ in rng.integer(below: c.vocabSize) }, visual: .embeddings(emb), grid: grid,
                          decodeSteps: decodeSteps, visionSide: VisionSideInputs(clsAttention: cls, similarityFeatures: sim))
    }
}
