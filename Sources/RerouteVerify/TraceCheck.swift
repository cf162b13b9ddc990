import Foundation
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace

/// A golden trace re-run and judged (SPEC.md §9.3): the run is compared with the golden, and
/// after an accepted route difference it is replayed in lockstep (routes forced from the
/// golden) so a legitimate flip does not turn every later layer red (`judge`).
public struct TraceCheck: Sendable {
    public var file: String
    public var model: String
    public var policy: String
    public var decoder: String
    public var verdict: Verdict

    /// "free", "stopped" or "lockstep": how routes were handled when judging.
    public var mode: String { verdict.mode.rawValue }
    public var passed: Bool { verdict.passed }

    /// Re-runs `golden`'s policy on its inputs with `decoder` and judges the result.
    public static func run<D: TraceableDecoder>(decoder: D, golden: Trace, file: String, rules: ComparisonRules) throws -> TraceCheck {
        func record(_ forced: [Int: [Int]]) throws -> Trace {
            try TraceRecorder.record(decoder: decoder, model: golden.provenance.model, case: golden.input, policy: golden.policy,
                                     seed: golden.provenance.seed, forcedKept: forced, file: file)
        }
        let verdict = try judge(expected: golden, actual: try record([:]), rules: rules, expectedName: file, actualName: decoder.name,
                                replay: record)
        return TraceCheck(file: file, model: golden.provenance.model, policy: golden.policy.name, decoder: decoder.name, verdict: verdict)
    }
}
