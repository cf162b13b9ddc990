import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteVerify

/// A random prompt case for `weights` (fixed seed), with optional vision-side inputs.
func randomCase(for weights: ModelWeights, seed: UInt64, prefix: Int = 3, grid: ImageGrid = ImageGrid(rows: 4, cols: 4),
                suffix: Int = 2, visionDim: Int? = nil, gapped: Bool = false) -> PromptCase {
    var rng = SplitMix64(seed: seed)
    let c = weights.config
    let n = grid.count
    let visual: VisualInput
    if let dv = visionDim {
        visual = .features(Matrix(rows: n, cols: dv, values: (0..<(n * dv)).map { _ in rng.nextSigned() }))
    } else {
        visual = .embeddings(Matrix(rows: n, cols: c.hiddenSize, values: (0..<(n * c.hiddenSize)).map { _ in rng.nextSigned() }))
    }
    let s = prefix + n + suffix
    var positions = PositionIDs.contiguous(s)
    if gapped {
        var p = 0
        positions = PositionIDs((0..<s).map { _ in defer { p += 1 + Int(rng.next() % 3) }; return p })
    }
    let side = VisionSideInputs(clsAttention: (0..<n).map { _ in abs(rng.nextSigned()) },
                                similarityFeatures: Matrix(rows: n, cols: 8, values: (0..<(n * 8)).map { _ in rng.nextSigned() }))
    return PromptCase(name: "random-\(seed)", prefixTokens: (0..<prefix).map { _ in Int(rng.next() % UInt64(c.vocabSize)) },
                      suffixTokens: (0..<suffix).map { _ in Int(rng.next() % UInt64(c.vocabSize)) }, visual: visual, grid: grid,
                      positions: positions, decodeSteps: 3, visionSide: side)
}

/// Adds a random projector (vision width `dv`) to weights.
func withProjector(_ w: ModelWeights, dv: Int, seed: UInt64) -> ModelWeights {
    var rng = SplitMix64(seed: seed)
    let d = w.config.hiddenSize
    var out = w
    out.projector = ProjectorWeights(
        linear1: Matrix(rows: d, cols: dv, values: (0..<(d * dv)).map { _ in rng.nextSigned() / Float(dv).squareRoot() }),
        bias1: (0..<d).map { _ in 0.1 * rng.nextSigned() },
        linear2: Matrix(rows: d, cols: d, values: (0..<(d * d)).map { _ in rng.nextSigned() / Float(d).squareRoot() }),
        bias2: (0..<d).map { _ in 0.1 * rng.nextSigned() })
    return out
}

/// Runs a routed prefill (and decode) with the reference decoder.
func routedRun(_ decoder: ReferenceDecoder, _ c: PromptCase, _ policy: RoutingPolicy) throws -> (ReferencePrefill, RoutingRecord, ReferenceDecode) {
    let (state, record) = try RoutedPrefill.run(decoder: decoder, case: c, policy: policy)
    let prefill = decoder.finish(state)
    let decode = decoder.greedyDecode(after: prefill, steps: c.decodeSteps, sequenceLength: record.llmCase.sequenceLength)
    return (prefill, record, decode)
}
