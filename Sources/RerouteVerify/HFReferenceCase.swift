import Foundation
import RerouteHDF5
import RerouteModel
import RerouteTrace

/// Outputs transformers produced for one case in one precision (tools/make_tiny_models.py).
public struct HFReferenceRun: Sendable {
    /// "float64" (float32 islands lifted, SPEC.md §7) or "float32" (stock transformers).
    public var name: String
    /// `[S][V]` logits at every prefill position.
    public var logits: [[Float]]
    /// `[T][V]` logits each greedy token was chosen from.
    public var stepLogits: [[Float]]
    public var greedyTokens: [Int]
    /// `[L+1][S][d]` hidden states entering each layer, then the last layer's output
    /// (float64 run only).
    public var hiddenStates: [[[Float]]]?
    /// `[L][H][S]` attention probabilities of the last prefill row (float64 run only).
    public var lastRowAttention: [[[Float]]]?
}

/// A shipped case file: the prompt case plus transformers' outputs for it.
public struct HFReferenceCase: Sendable {
    public var file: String
    public var model: String
    public var promptCase: PromptCase
    public var runs: [HFReferenceRun]

    public static let format = "reroute.hf-reference"
    public static let formatVersion = 1

    /// Reads a case file, validating its format, version, shapes and values.
    public static func load(path: String) throws -> HFReferenceCase {
        let f = try HDF5File(readingFrom: path)
        let format = try f.stringAttribute("format")
        guard format == Self.format else {
            throw InputError(.badCase, file: path, object: "/@format", "'\(format)', expected '\(Self.format)'")
        }
        let version = try f.intAttribute("format_version")
        guard version == Self.formatVersion else {
            throw InputError(.badCase, file: path, object: "/@format_version", "version \(version), this build reads \(Self.formatVersion)")
        }
        let model = try f.stringAttribute("model")
        let name = try f.stringAttribute("case")

        func ints(_ p: String, rank: Int) throws -> (values: [Int], shape: [Int]) {
            let r = try f.readInts(p)
            guard r.shape.count == rank else { throw InputError(.badCase, file: path, object: p, "rank \(r.shape.count), expected \(rank)") }
            return r
        }
        // The /inputs group is the one traces use (SPEC.md §6, §9.1).
        let promptCase = try PromptCaseIO.read(f, name: name)
        let steps = promptCase.decodeSteps

        var runs: [HFReferenceRun] = []
        for run in ["float64", "float32"] where f.exists("/\(run)") {
            func rows(_ p: String, cols expected: Int? = nil) throws -> [[Float]] {
                let r = try f.readFloats(p)
                guard r.shape.count == 2, expected == nil || r.shape[0] == expected else {
                    throw InputError(.badCase, file: path, object: p, "shape \(r.shape)")
                }
                return (0..<r.shape[0]).map { Array(r.values[($0 * r.shape[1])..<(($0 + 1) * r.shape[1])]) }
            }
            var hidden: [[[Float]]]?
            let hp = "/\(run)/hidden_states"
            if f.exists(hp) {
                let r = try f.readFloats(hp)
                guard r.shape.count == 3 else { throw InputError(.badCase, file: path, object: hp, "shape \(r.shape), expected [L+1, S, d]") }
                let (a, s, d) = (r.shape[0], r.shape[1], r.shape[2])
                hidden = (0..<a).map { l in (0..<s).map { i in Array(r.values[((l * s + i) * d)..<((l * s + i + 1) * d)]) } }
            }
            var attention: [[[Float]]]?
            let ap = "/\(run)/last_row_attention"
            if f.exists(ap) {
                let r = try f.readFloats(ap)
                guard r.shape.count == 3, r.shape[2] == promptCase.sequenceLength else {
                    throw InputError(.badCase, file: path, object: ap, "shape \(r.shape), expected [L, H, S]")
                }
                let (a, h, s) = (r.shape[0], r.shape[1], r.shape[2])
                attention = (0..<a).map { l in (0..<h).map { i in Array(r.values[((l * h + i) * s)..<((l * h + i + 1) * s)]) } }
            }
            runs.append(HFReferenceRun(
                name: run,
                logits: try rows("/\(run)/logits", cols: promptCase.sequenceLength),
                stepLogits: try rows("/\(run)/step_logits", cols: steps),
                greedyTokens: try ints("/\(run)/greedy_tokens", rank: 1).values,
                hiddenStates: hidden,
                lastRowAttention: attention))
        }
        if runs.isEmpty { throw InputError(.badCase, file: path, "no transformers outputs (/float64 or /float32)") }
        return HFReferenceCase(file: path, model: model, promptCase: promptCase, runs: runs)
    }
}
