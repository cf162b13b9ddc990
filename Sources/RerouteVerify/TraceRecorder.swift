import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace

/// Runs a policy on a case with the reference decoder and records the trace (SPEC.md §9).
public enum TraceRecorder {
    /// - Parameters:
    ///   - forcedKept: lockstep replay (kept grid cells per decision layer), from another trace.
    ///   - commit: the producer's git commit, when known.
    public static func record(decoder: ReferenceDecoder, model: String, case c: PromptCase, policy: RoutingPolicy, seed: Int,
                              forcedKept: [Int: [Int]] = [:], commit: String = "unknown", file: String = "<case>") throws -> Trace {
        try c.validate(for: decoder.config, projector: decoder.weights.projector, file: file)
        let (state, record) = try RoutedPrefill.run(decoder: decoder, case: c, policy: policy, forcedKept: forcedKept)
        let prefill = decoder.finish(state)
        let decode = decoder.greedyDecode(after: prefill, steps: c.decodeSteps, sequenceLength: record.llmCase.sequenceLength)
        let budget = try BudgetCalculator.report(config: decoder.config, policy: policy,
                                                 textTokens: c.prefixTokens.count + c.suffixTokens.count, grid: c.grid)
        func f(_ rows: [[Double]]) -> [[Float]] { rows.map { $0.map(Float.init) } }
        return Trace(
            provenance: TraceProvenance(producerCommit: commit, decoder: "reference", mode: forcedKept.isEmpty ? "free" : "lockstep",
                                        model: model, seed: seed),
            config: decoder.config, policy: policy, input: c, llmGridIndices: record.llmCase.visualGridIndices,
            hiddenStates: prefill.hiddenStates.map(f), processed: record.plans.map(\.active),
            layerPositions: record.plans.map(\.positions.linear), decodePositions: record.plans.map(\.decodePosition),
            kvLength: prefill.caches.map(\.count), lastLogits: prefill.lastLogits.map(Float.init), decisions: record.decisions,
            decodeTokens: decode.tokens, stepLogits: f(decode.stepLogits), kvLengthAfterDecode: decode.caches.map(\.count),
            budget: budget)
    }
}
