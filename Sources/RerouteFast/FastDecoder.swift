import CBLAS
import CRerouteKernels
import Foundation
import RerouteModel

/// Options of a fast-decoder run.
public struct FastDecoderOptions: Sendable {
    /// Keep the hidden state entering every layer (traces need it; benchmarks do not). When
    /// false only the current and the previous layer's inputs are kept (scoring needs them).
    public var recordHiddenStates: Bool
    /// Worker threads (nil: one per core). Each matrix product's output columns (decode:
    /// rows; and the attention heads) are split over the workers, each calling OpenBLAS,
    /// which the program sets to 1 thread once (`BLASThreads`) so nothing oversubscribes
    /// (SPEC.md §10.2).
    public var threads: Int?
    /// Layer products with at most this many rows use the packed-weight kernel of
    /// `CRerouteKernels` instead of OpenBLAS (on the AVX2 and AVX-512 paths). f32 weights are
    /// packed once, when the decoder is made, which doubles their memory; mapped bf16 weights
    /// are packed tile by tile as they are multiplied (`packedTileFloats`). OpenBLAS repacks
    /// the weights on every call, which at routed layers' row counts costs about as much as
    /// the multiply. nil: the measured crossover of the decoder's path
    /// (`FastDecoder.packedRowCrossover`); 0: OpenBLAS only.
    public var packedRowLimit: Int?
    /// Floats of one worker's tile of packed weight rows when a matrix is packed as it is
    /// multiplied (mapped bf16): at least one pair of 16-row panels. Results do not depend on
    /// it; the default (2²¹, 8 MiB) keeps the tiles few against the cost of packing them.
    public var packedTileFloats: Int
    /// The vector path of the decoder's own kernels (`VectorISA`; default `VectorISA.standard`:
    /// `REROUTE_ISA` when set, else the CPU's widest); a path wider than the CPU has is
    /// narrowed to `VectorISA.widest` (the decoder's `isa` says which ran).
    public var isa: VectorISA

    public init(recordHiddenStates: Bool = true, threads: Int? = nil, packedRowLimit: Int? = nil, isa: VectorISA = .standard,
                packedTileFloats: Int = 1 << 21) {
        self.recordHiddenStates = recordHiddenStates
        self.threads = threads
        self.packedRowLimit = packedRowLimit
        self.isa = isa
        self.packedTileFloats = packedTileFloats
    }
}

/// The optimized decoder (SPEC.md §10): Float32, OpenBLAS `sgemm`/`sgemv` for the matrix
/// products (on the vector paths, the packed-weight kernel of `CRerouteKernels` for products of
/// up to `packedRowLimit` rows and its attention kernel), the C kernels of its vector path
/// for RMSNorm, RoPE, softmax and SwiGLU, SIMD8 for residual adds
/// and row gather/scatter. It executes the same
/// plans as the reference decoder; only the arithmetic differs.
public struct FastDecoder: Sendable {
    public let weights: ModelWeights
    public let options: FastDecoderOptions
    /// Workers actually used.
    public let workers: Int
    public var config: ModelConfig { weights.config }
    let inverseFrequencies: [Double]
    /// The position axis each rotary frequency reads (`ModelConfig.ropeFrequencyAxes`).
    let frequencyAxes: [Int]
    /// Every layer's projections packed for the packed-weight kernel; nil when it is not used,
    /// or when a projection is mapped bf16 (then every projection is packed tile by tile as it
    /// is multiplied).
    let packed: [PackedLayer]?
    /// Whether products of at most `packedRowLimit` rows use the packed-weight kernel.
    public var usesPackedWeights: Bool { packedRowLimit > 0 }
    /// The vector path the decoder's kernels run: `options.isa`, at most the CPU's widest.
    public let isa: VectorISA
    /// Products with at most this many rows use the packed-weight kernel (`options.packedRowLimit`,
    /// or the path's crossover); 0 when the kernel is not used (the portable path, or a limit of 0).
    public let packedRowLimit: Int

    public init(weights: ModelWeights, options: FastDecoderOptions = FastDecoderOptions()) {
        self.weights = weights
        self.options = options
        inverseFrequencies = (0..<(weights.config.headDim / 2)).map {
            pow(weights.config.ropeTheta, -Double(2 * $0) / Double(weights.config.headDim))
        }
        frequencyAxes = weights.config.ropeFrequencyAxes
        workers = max(1, options.threads ?? ProcessInfo.processInfo.activeProcessorCount)
        isa = min(options.isa, .widest)
        let limit = options.packedRowLimit ?? Self.packedRowCrossover(isa: isa)
        let packable = limit > 0 && isa >= .avx2
        // Packed whole only when every projection is f32 (a checkpoint may map some tensors and not others).
        let mapped = weights.layers.contains { l in [l.q, l.k, l.v, l.o, l.gate, l.up, l.down].contains { $0.isMapped } }
        packed = packable && !mapped ? weights.layers.map(PackedLayer.init) : nil
        packedRowLimit = packable ? limit : 0
    }

    /// cos/sin of `position · f[k]`, computed in Double and rounded once (float32 angles
    /// would err by `position · 2^-24` rad). A decode token has one position on every axis.
    func rotation(_ position: Int) -> (cos: [Float], sin: [Float]) {
        rotation(frequencyPositions: Array(repeating: position, count: inverseFrequencies.count))
    }

    /// cos/sin of `positions[k] · f[k]` (positions per rotary frequency).
    func rotation(frequencyPositions positions: [Int]) -> (cos: [Float], sin: [Float]) {
        let angles = zip(positions, inverseFrequencies).map { Double($0) * $1 }
        return (angles.map { Float(Foundation.cos($0)) }, angles.map { Float(Foundation.sin($0)) })
    }

    /// Fills `cos`/`sin` rows `[i, d_h/2]` for each token `i` of `positions` in `rows` (all
    /// by default), without allocating; frequency k reads its axis (M-RoPE) or the only one.
    func fillRotations(_ positions: PositionIDs, rows: Range<Int>? = nil, cos c: UnsafeMutablePointer<Float>, sin s: UnsafeMutablePointer<Float>) {
        let h = inverseFrequencies.count, last = positions.axisCount - 1
        for i in rows ?? 0..<positions.count {
            for k in 0..<h {
                let angle = Double(positions.axes[min(frequencyAxes[k], last)][i]) * inverseFrequencies[k]
                c[i * h + k] = Float(Foundation.cos(angle))
                s[i * h + k] = Float(Foundation.sin(angle))
            }
        }
    }
}

/// The keys a score request computed (after bias and RoPE), which the run of the same layer
/// reuses for the tokens it processes at the same positions instead of projecting them again.
public struct ScoredKeys: Sendable {
    public let layer: Int
    /// Row in `keys` of each sequence index (−1: not scored).
    let rowOfToken: [Int]
    /// The position each scored row was rotated at (one per row).
    let positions: [SIMD3<Int>]
    /// `[rows, H_kv·d_h]`.
    let keys: [Float]

    /// The row of sequence index `token`, if it was scored at `position`.
    func row(of token: Int, at position: SIMD3<Int>) -> Int? {
        guard token >= 0, token < rowOfToken.count, rowOfToken[token] >= 0, positions[rowOfToken[token]] == position else { return nil }
        return rowOfToken[token]
    }
}

/// Buffers of one run, allocated once in `begin` (activations sized for the whole sequence,
/// each layer's KV cache at its final capacity).
public final class FastState {
    let sequenceLength: Int
    /// Residual stream `[S, d]` entering the next layer.
    var hidden: [Float]
    /// Inputs of every past layer when recording; otherwise only `previousInput`.
    var layerInputs: [[Float]] = []
    /// The input of the layer that ran last (scoring with `producedByPreviousLayer` reads it).
    var previousInput: [Float]
    var layersRun = 0
    var plans: [LayerPlan] = []
    /// Per layer: keys and values `[capacity, H_kv·d_h]` after RoPE, entry count, positions.
    var keys: [[Float]] = []
    var values: [[Float]] = []
    var kvCount: [Int] = []
    var kvCapacity: [Int] = []
    var lastLogits: [Float] = []
    // Workspace, [S, ·] each.
    var x: [Float], xn: [Float], q: [Float], k: [Float], v: [Float], att: [Float], o: [Float], g: [Float], u: [Float]
    /// Each worker's attention workspace: the attention kernel's (vector paths) or `[S, S]` scores (portable).
    var scores: [Float]
    /// Normalised scoring rows `[S, d]` (workspace of one score request).
    var scoreRows: [Float]
    /// cos/sin of the current layer's positions, `[S, d_h/2]` each.
    var cosTable: [Float], sinTable: [Float]
    /// Rows packed for the packed-weight kernel (`FastDecoder.packRows`), one input at a time.
    var packedRows: [Float]

    init(sequenceLength s: Int, config c: ModelConfig, capacity: [Int], workers: Int, scoresPerWorker: Int, packedRowsCount: Int) {
        sequenceLength = s
        hidden = [Float](repeating: 0, count: s * c.hiddenSize)
        previousInput = hidden
        scoreRows = hidden
        x = hidden
        xn = hidden
        o = hidden
        q = [Float](repeating: 0, count: s * c.queryWidth)
        att = q
        k = [Float](repeating: 0, count: s * c.kvWidth)
        v = k
        g = [Float](repeating: 0, count: s * c.intermediateSize)
        u = g
        scores = [Float](repeating: 0, count: workers * scoresPerWorker)
        cosTable = [Float](repeating: 0, count: s * c.headDim / 2)
        sinTable = cosTable
        packedRows = [Float](repeating: 0, count: packedRowsCount)
        kvCapacity = capacity
        keys = capacity.map { [Float](repeating: 0, count: $0 * c.kvWidth) }
        values = keys
        kvCount = Array(repeating: 0, count: c.layers)
    }

    /// The hidden states entering `layer`, if kept.
    func input(of layer: Int) -> [Float]? {
        if layer < layerInputs.count { return layerInputs[layer] }
        if layer == layersRun { return hidden }
        if layer == layersRun - 1 { return previousInput }
        return nil
    }

    /// Bytes held by the KV caches: `Σ_l capacity_l · 2 · H_kv · d_h · 4`.
    public var kvAllocatedBytes: Int { keys.map { $0.count * 4 }.reduce(0, +) + values.map { $0.count * 4 }.reduce(0, +) }
}
