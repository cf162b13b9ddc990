import Foundation
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace

/// A golden trace re-run and compared (SPEC.md §9.3): free mode first; when the only route
/// differences are tie flips within ε, the run is repeated in lockstep (routes forced from
/// the golden) so a legitimate flip does not turn every later layer red.
public struct TraceCheck: Sendable {
    public var file: String
    public var model: String
    public var policy: String
    public var decoder: String
    public var free: TraceDiffReport
    public var lockstep: TraceDiffReport?

    /// "free", or "lockstep" when the lockstep replay decided the verdict.
    public var mode: String { lockstep == nil ? "free" : "lockstep" }
    public var verdict: TraceDiffReport { lockstep ?? free }
    public var passed: Bool { verdict.passed }

    /// Re-runs `golden`'s policy on its inputs with `decoder` and compares.
    public static func run<D: TraceableDecoder>(decoder: D, golden: Trace, file: String, options: DiffOptions) throws -> TraceCheck {
        let actual = try TraceRecorder.record(decoder: decoder, model: golden.provenance.model, case: golden.input, policy: golden.policy,
                                              seed: golden.provenance.seed, file: file)
        let free = diffTraces(expected: golden, actual: actual, options: options, expectedName: file, actualName: "\(decoder.name) (free)")
        var lockstep: TraceDiffReport?
        if !free.passed, free.lockstepJustified {
            let forced = Dictionary(uniqueKeysWithValues: golden.decisions.map { ($0.layer, $0.kept) })
            let replay = try TraceRecorder.record(decoder: decoder, model: golden.provenance.model, case: golden.input,
                                                  policy: golden.policy, seed: golden.provenance.seed, forcedKept: forced, file: file)
            var report = diffTraces(expected: golden, actual: replay, options: options, expectedName: file,
                                    actualName: "\(decoder.name) (lockstep)")
            // The flips themselves are part of the verdict: they were accepted within ε.
            report.items.insert(contentsOf: free.tieFlips, at: 0)
            lockstep = report
        }
        return TraceCheck(file: file, model: golden.provenance.model, policy: golden.policy.name, decoder: decoder.name,
                          free: free, lockstep: lockstep)
    }
}
