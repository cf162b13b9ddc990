import ArgumentParser
import CBLAS
import Foundation
import RerouteFast
import RerouteHDF5
import RerouteModel
import RerouteRouting
import RerouteTrace

struct TimeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "time",
        abstract: "Time the fast decoder's prefill of a case under one or more policies (used by tools/bench_torch.py).",
        discussion: """
            Loads the model folder and the case (/inputs of an HDF5 file), runs one warm-up prefill,
            then --repeats prefills per policy, interleaved across policies, and prints one line per
            policy: name, median milliseconds, minimum milliseconds. Build with -c release.
            """)
    @Option(help: "Model folder.") var model: String
    @Option(name: .customLong("case"), help: "HDF5 file with an /inputs group.") var caseFile: String
    @Option(name: .customLong("policy"), help: "Policy name (repeatable).") var policies: [String] = ["dense"]
    @Option(help: "Timed prefills per policy.") var repeats = 3
    @Option(help: "Worker threads of the fast decoder (default: all cores).") var threads: Int?

    func run() throws {
        let weights = try ModelWeights.load(directory: URL(fileURLWithPath: model))
        let c = try PromptCaseIO.read(try HDF5File(readingFrom: caseFile), name: "case")
        try c.validate(for: weights.config, projector: weights.projector, file: caseFile)
        let ps = try policies.map { name -> RoutingPolicy in
            guard let p = PolicyCatalog.named(name) else { throw ValidationError("unknown policy '\(name)'") }
            return p
        }
        let fast = FastDecoder(weights: weights, options: .init(recordHiddenStates: false, threads: threads))
        func once(_ p: RoutingPolicy) throws -> Double {
            let prepared = try RoutedPrefill.prepare(decoder: fast, case: c, policy: p)
            let t0 = DispatchTime.now().uptimeNanoseconds
            let (state, _) = try RoutedPrefill.execute(decoder: fast, prepared)
            _ = fast.prefillOutputs(state).lastLogits
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        }
        _ = try once(ps[0])
        var times = Array(repeating: [Double](), count: ps.count)
        for _ in 0..<repeats { for (i, p) in ps.enumerated() { times[i].append(try once(p)) } }
        for (i, p) in ps.enumerated() {
            let s = times[i].sorted()
            print(String(format: "%@ %.1f %.1f", p.name, s[s.count / 2], s[0]))
        }
    }
}
