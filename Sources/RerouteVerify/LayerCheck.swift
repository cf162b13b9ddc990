import Foundation
import RerouteFast
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace

/// The layer-wise check for models too big for a whole reference run (SPEC.md §9.7): the
/// fast decoder runs the policy once; then, for each chosen layer, the reference decoder runs
/// that layer alone, teacher-forced — its input is the fast run's input to the layer, its
/// plan the fast run's plan — and at a decision layer it decides again from that input (the
/// earlier decisions forced to the fast run's). The layer's output, its scores and its route
/// are judged by the verdict's rules (`fp32` preset for one layer).
public enum LayerCheck {
    public struct LayerResult: Sendable {
        public var layer: Int
        public var findings: [Finding]
        /// Seconds the reference took for this layer (its decision included).
        public var seconds: Double
        public var passed: Bool { !findings.contains(where: \.failed) }
    }

    public struct Report: Sendable {
        /// The fast run, with the hidden state entering every layer.
        public var fast: Trace
        public var rules: ComparisonRules
        public var layers: [LayerResult]
        public var fastSeconds: Double
        public var passed: Bool { layers.allSatisfy(\.passed) }
    }

    /// - Parameters:
    ///   - layers: the layers to check, each in `0 ..< L`.
    ///   - referenceWeights: what the reference layers run with (default: `weights`; another
    ///     copy of the same model, e.g. in another dtype, or a perturbed one in tests).
    ///   - progress: a line per phase (the fast run, each layer), with the time it took.
    public static func run(weights: ModelWeights, referenceWeights: ModelWeights? = nil, model: String, case c: PromptCase,
                           adapter: some PrunerAdapter, layers chosen: [Int], fastOptions: FastDecoderOptions = FastDecoderOptions(),
                           file: String = "<case>", progress: (String) -> Void = { _ in }) throws -> Report {
        let L = weights.config.layers
        if let bad = chosen.first(where: { !(0..<L).contains($0) }) {
            throw InputError(.outOfRange, file: file, object: "--layers", "layer \(bad) is outside 0 ..< \(L)")
        }
        let t0 = Date()
        progress("fast run of \(adapter.policy.name) (\(L) layers, \(c.sequenceLength) tokens)")
        let fast = try TraceRecorder.record(decoder: FastDecoder(weights: weights, options: fastOptions), model: model, case: c,
                                            adapter: adapter, seed: 0, file: file)
        let fastSeconds = Date().timeIntervalSince(t0)
        progress(String(format: "fast run done in %.1f s", fastSeconds))
        var one = weights.config
        one.layers = 1
        let rules = ComparisonRules.preset(.fp32, config: one, maxPosition: c.positions.maxPosition)
        func widen(_ rows: [[Float]]) -> [[Double]] { rows.map { $0.map(Double.init) } }
        let refWeights = referenceWeights ?? weights
        guard refWeights.config == weights.config else {
            throw InputError(.badValue, file: file, object: "reference weights", "their config differs from the fast run's")
        }
        var results: [LayerResult] = []
        for l in chosen.sorted() {
            let start = Date()
            var findings: [Finding] = []
            let reference = ReferenceDecoder(weights: refWeights.layerView(l))
            let input = widen(fast.hiddenStates[l])
            if let t = fast.decisions.firstIndex(where: { $0.layer == l }) {
                findings += try decision(at: l, index: t, fast: fast, weights: refWeights, case: c, adapter: adapter, rules: rules)
            }
            let plan = LayerPlan(active: fast.processed[l], positions: fast.layerPositions[l], decodePosition: fast.decodePositions[l])
            let output = reference.layerOutput(layer: 0, input: input, plan: plan)
            let c = compareRows("/prefill/hidden_states[\(l + 1)]", expected: output, actual: widen(fast.hiddenStates[l + 1]),
                                tolerance: rules.tensors, maxReported: rules.maxReported)
            findings.append(tensorFinding("/prefill/hidden_states[\(l + 1)]", c, rules.tensors, rows: "sequence index"))
            let seconds = Date().timeIntervalSince(start)
            results.append(LayerResult(layer: l, findings: findings, seconds: seconds))
            progress(String(format: "layer %d: %@ (reference %.1f s)", l, results.last!.passed ? "agrees" : "DIFFERS", seconds))
        }
        return Report(fast: fast, rules: rules, layers: results, fastSeconds: fastSeconds)
    }

    /// The reference's decision at layer `l` from the fast run's inputs, every earlier decision
    /// forced to the fast run's, against the fast run's decision (scores and route).
    static func decision(at l: Int, index t: Int, fast: Trace, weights: ModelWeights, case c: PromptCase, adapter: some PrunerAdapter,
                         rules: ComparisonRules) throws -> [Finding] {
        let llmCase = try adapter.llmCase(for: c)
        var forced = fast.forcedRoutes
        forced[l] = nil
        var session = try RoutingSession(adapter: adapter, llmCase: llmCase, layers: weights.config.layers, originalN: c.grid.count,
                                         forcedKept: forced)
        var scorers: [Int: ReferenceDecoder] = [:]
        // The reference for layer s alone, on the fast run's hidden states entering it.
        func scorer(_ s: Int) -> (decoder: ReferenceDecoder, state: ReferenceState) {
            if scorers[s] == nil { scorers[s] = ReferenceDecoder(weights: weights.layerView(s)) }
            return (scorers[s]!, ReferenceState(hiddenStates: [fast.hiddenStates[s].map { $0.map(Double.init) }]))
        }
        for k in 0...l {
            let probe = DecisionProbe(attention: { request in
                // Forced decisions only record scores: answer with zeros of the right shape.
                guard k == l else {
                    return request.queryRows.map { _ in (0..<weights.config.heads).map { _ in [Double](repeating: 0, count: request.keys.count) } }
                }
                let (decoder, state) = scorer(request.layer)
                return decoder.attentionProbabilities(
                    ScoreRequest(layer: 0, keys: request.keys, keyPositions: request.keyPositions, queryRows: request.queryRows), state: state)
                    .probabilities
            }, hiddenStates: { layer, rows in rows.map { fast.hiddenStates[layer][$0].map(Double.init) } },
            keys: { layer, rows, positions in
                let (decoder, state) = scorer(layer)
                return decoder.rotatedKeys(layer: 0, rows: rows, positions: positions, state: state)
            }, finalNormed: { rows in scorer(l).decoder.finalNormed(rows) })
            _ = try session.plan(layer: k, probe: probe)
        }
        guard let mine = session.decisions.first(where: { $0.layer == l }) else { return [] }
        let theirs = fast.decisions[t]
        let path = String(format: "/prefill/decisions/%02d", t)
        var out = [routeFinding("\(path)/{kept,deferred}", mine, theirs, rules)]
        if mine.candidates == theirs.candidates {
            let sc = compareRows("\(path)/scores", expected: [mine.scores], actual: [theirs.scores], tolerance: rules.scores,
                                 maxReported: rules.maxReported)
            out.append(tensorFinding("\(path)/scores", sc, rules.scores, rows: "decision"))
        } else {
            out.append(Finding(object: "\(path)/candidates", kind: .set, status: .failed,
                               summary: "reference candidates \(mine.candidates.count), fast \(theirs.candidates.count) (visual grid cells)"))
        }
        return out
    }
}
