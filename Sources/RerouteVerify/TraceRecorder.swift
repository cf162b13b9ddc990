import RerouteFast
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace

/// Runs a policy on a case with a decoder and records the trace (SPEC.md §9).
public enum TraceRecorder {
    /// - Parameters:
    ///   - forcedKept: lockstep replay (kept grid cells per decision layer), from another trace.
    ///   - commit: the producer's git commit, when known.
    ///   - onLayer: called after each prefill layer ran, with its index (progress of long runs).
    public static func record<D: TraceableDecoder>(decoder: D, model: String, case c: PromptCase, policy: RoutingPolicy, seed: Int,
                                                   forcedKept: [Int: [Int]] = [:], commit: String = "unknown",
                                                   file: String = "<case>", onLayer: ((Int) -> Void)? = nil) throws -> Trace {
        try record(decoder: decoder, model: model, case: c, adapter: policy, seed: seed, forcedKept: forcedKept, commit: commit, file: file,
                   onLayer: onLayer)
    }

    /// The same for any adapter; the trace stores the adapter's declared policy.
    public static func record<D: TraceableDecoder>(decoder: D, model: String, case c: PromptCase, adapter: some PrunerAdapter, seed: Int,
                                                   forcedKept: [Int: [Int]] = [:], commit: String = "unknown",
                                                   file: String = "<case>", onLayer: ((Int) -> Void)? = nil) throws -> Trace {
        let policy = adapter.policy
        try c.validate(for: decoder.config, projector: decoder.weights.projector, file: file)
        var (state, record) = try RoutedPrefill.run(decoder: decoder, case: c, adapter: adapter, forcedKept: forcedKept, onLayer: onLayer)
        let prefill = decoder.prefillOutputs(state)
        let decode = decoder.greedyDecode(&state, steps: c.decodeSteps)
        let budget = try BudgetCalculator.report(config: decoder.config, policy: policy,
                                                 textTokens: c.prefixTokens.count + c.suffixTokens.count, grid: c.grid,
                                                 llmVisualTokens: record.llmCase.visual.count)
        return Trace(
            provenance: TraceProvenance(producerCommit: commit, decoder: decoder.name, mode: forcedKept.isEmpty ? .free : .lockstep,
                                        model: model, seed: seed, isa: decoder.vectorPath),
            config: decoder.config, policy: policy, input: c, llmGridIndices: record.llmCase.visualGridIndices,
            hiddenStates: prefill.hiddenStates, processed: record.plans.map(\.active),
            layerPositions: record.plans.map(\.positions), decodePositions: record.plans.map(\.decodePosition),
            kvLength: prefill.kvLength, lastLogits: prefill.lastLogits, decisions: record.decisions,
            decodeTokens: decode.tokens, stepLogits: decode.stepLogits, kvLengthAfterDecode: decode.kvLength, budget: budget)
    }

    /// A lockstep re-run of `t` (its case, policy and seed) with the suite decoder that
    /// recorded it, for `judge(…, replay:)`: the closure takes the kept sets to force.
    /// - Throws: `InputError` when `t` was recorded by another program, or `weights` are not
    ///   its model (`file`, `modelFolder` name them).
    public static func replayer(of t: Trace, file: String, weights: ModelWeights, modelFolder: String) throws -> ([Int: [Int]]) throws -> Trace {
        guard weights.config == t.config else {
            throw InputError(.badValue, file: modelFolder, object: "config.json", "is not the model of \(file) (/@model_config differs)")
        }
        func rerun<D: TraceableDecoder>(_ d: D) -> ([Int: [Int]]) throws -> Trace {
            { forced in try record(decoder: d, model: t.provenance.model, case: t.input, policy: t.policy, seed: t.provenance.seed,
                                   forcedKept: forced, file: file) }
        }
        switch DecoderKind(rawValue: t.provenance.decoder) {
        case .reference: return rerun(ReferenceDecoder(weights: weights))
        case .fast: return rerun(FastDecoder(weights: weights))
        case nil:
            throw InputError(.badValue, file: file, object: "/@decoder",
                             "'\(t.provenance.decoder)' cannot be re-run here; --replay re-runs the suite's own decoders "
                                 + "(record your run again with the expected trace's routes forced instead)")
        }
    }
}
