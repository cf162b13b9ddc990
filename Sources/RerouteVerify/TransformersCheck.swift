import RerouteModel
import RerouteReference

/// An exact comparison of integer sequences (greedy tokens).
public struct ExactComparison: Sendable, Codable {
    public var name: String
    public var expected: [Int]
    public var actual: [Int]
    public var passed: Bool { expected == actual }
}

/// The reference decoder checked against transformers' outputs for one case.
public struct TransformersCheck: Sendable {
    public var model: String
    public var caseName: String
    public var file: String
    public var tensors: [TensorComparison]
    public var exact: [ExactComparison]
    public var passed: Bool { tensors.allSatisfy(\.passed) && exact.allSatisfy(\.passed) }
}

extension TransformersCheck {
    /// Runs the dense reference prefill and greedy decode on `reference.promptCase` and
    /// compares, per transformers run: hidden states entering every layer (float64 run),
    /// logits at every prefill position, step logits, and greedy tokens (exact).
    public static func run(decoder: ReferenceDecoder, model: String, reference: HFReferenceCase) throws -> TransformersCheck {
        let c = reference.promptCase
        try c.validate(for: decoder.config, projector: decoder.weights.projector, file: reference.file)
        let prefill = decoder.prefill(c, plan: .dense(layers: decoder.config.layers, case: c))
        let decode = decoder.greedyDecode(after: prefill, steps: c.decodeSteps, sequenceLength: c.sequenceLength)
        let allLogits = prefill.hiddenStates[decoder.config.layers].map(decoder.logits)
        var tensors: [TensorComparison] = []
        var exact: [ExactComparison] = []
        for run in reference.runs {
            let tol: Tolerance = run.name == "float64" ? .transformersFloat64 : .transformersFloat32
            func widen(_ m: [[Float]]) -> [[Double]] { m.map { $0.map(Double.init) } }
            if let hs = run.hiddenStates {
                for (l, expected) in hs.enumerated() {
                    let label = l < decoder.config.layers ? "hidden[\(l)]" : "output[\(l - 1)]"
                    tensors.append(compareRows("\(run.name)/\(label)", expected: widen(expected),
                                               actual: l < prefill.hiddenStates.count ? prefill.hiddenStates[l] : [], tolerance: tol))
                }
            }
            if let attention = run.lastRowAttention {
                // The scoring primitive (SPEC.md §8.1) against transformers' own attention.
                let state = ReferenceState(hiddenStates: prefill.hiddenStates)
                let all = Array(0..<c.sequenceLength)
                for (l, expected) in attention.enumerated() where l < decoder.config.layers {
                    let p = decoder.attentionProbabilities(
                        ScoreRequest(layer: l, keys: all, keyPositions: c.positions, queryRows: [all.count - 1]), state: state).probabilities
                    tensors.append(compareRows("\(run.name)/last_row_attention[\(l)]", expected: widen(expected), actual: p[0], tolerance: tol))
                }
            }
            tensors.append(compareRows("\(run.name)/logits", expected: widen(run.logits), actual: allLogits, tolerance: tol))
            tensors.append(compareRows("\(run.name)/step_logits", expected: widen(run.stepLogits), actual: decode.stepLogits, tolerance: tol))
            exact.append(ExactComparison(name: "\(run.name)/greedy_tokens", expected: run.greedyTokens, actual: decode.tokens))
        }
        return TransformersCheck(model: model, caseName: c.name, file: reference.file, tensors: tensors, exact: exact)
    }
}
