import RerouteFixtures
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteVerify

/// A random prompt case for `weights` (fixed seed), with optional vision-side inputs.
func randomCase(for weights: ModelWeights, seed: UInt64, prefix: Int = 3, grid: ImageGrid = ImageGrid(rows: 4, cols: 4),
                suffix: Int = 2, visionDim: Int? = nil, gapped: Bool = false) -> PromptCase {
    RandomCase.make(config: weights.config, name: "random-\(seed)", grid: grid, prefix: prefix, suffix: suffix,
                    visual: visionDim.map { .features(width: $0) } ?? .embeddings, positions: gapped ? .gapped : .contiguous,
                    decodeSteps: 3, similarityWidth: 8, seed: seed)
}

/// Adds a random projector (vision width `dv`) to weights.
func withProjector(_ w: ModelWeights, dv: Int, seed: UInt64) -> ModelWeights {
    var out = w
    out.projector = RandomModel.weights(w.config, visionDim: dv, seed: seed).projector
    return out
}

/// Runs a routed prefill (and decode) with the reference decoder.
func routedRun(_ decoder: ReferenceDecoder, _ c: PromptCase, _ policy: RoutingPolicy) throws -> (ReferencePrefill, RoutingRecord, ReferenceDecode) {
    let (state, record) = try RoutedPrefill.run(decoder: decoder, case: c, policy: policy)
    let prefill = decoder.finish(state)
    let decode = decoder.greedyDecode(after: prefill, steps: c.decodeSteps, sequenceLength: record.llmCase.sequenceLength)
    return (prefill, record, decode)
}
