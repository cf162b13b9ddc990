import ArgumentParser
import Foundation
import RerouteConformance
import RerouteRouting
import RerouteVerify
import RerouteTrace

struct ConformCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conform",
        abstract: "Check pruner adapters (or traces from elsewhere) against the conformance laws.",
        discussion: HelpText.reflowed("""
            With policy names or --all, runs each shipped policy on random models and cases (two
            shapes, seeds from --seeds) with both decoders and checks every law of SPEC.md §11.2:
            determinism, well-formed decisions, text never dropped, the declared schedule, budget
            and tier, bypass identity, no re-admission, positions, no routing at decode, KV lengths,
            decoder agreement, ratio 1 = dense, offset and prefix invariance, degenerate inputs.
            With --trace FILE..., checks trace files produced elsewhere (e.g. by tools/torch_trace.py)
            against the laws one trace can show, using the policy the trace declares.
            Failures name the law, the input (model, seed, case), the place, expected and actual.
            Exit codes: 0 every law holds or is waived, 1 a law fails, 2 error.
            Policies: \(PolicyCatalog.names.joined(separator: ", ")).
            """))

    @Argument(help: "Shipped policy names (or, with --trace, trace files).", completion: .file()) var names: [String] = []
    @Flag(help: "Every shipped policy.") var all = false
    @Option(help: "Policy file (reroute.policy v1) to check as a top-k adapter (repeatable).") var policyFile: [String] = []
    @Flag(help: "The arguments are trace files to check (instead of policies to run).") var trace = false
    @Option(help: "Comma-separated case seeds.") var seeds = "1,2"
    @Flag(help: "Machine-readable JSON report (reroute.conformance v1) on standard output.") var json = false
    @Flag(name: .shortAndLong, help: "Print every law's statement.") var verbose = false

    func validate() throws {
        if trace {
            if all || names.isEmpty { throw ValidationError("--trace takes trace files as arguments (and no --all)") }
        } else if all == !(names.isEmpty && policyFile.isEmpty) {
            throw ValidationError("give policy names, --policy-file FILE or --all (one of them)")
        }
        if parsedSeeds == nil { throw ValidationError("--seeds: '\(seeds)' is not a comma-separated list of integers in 0 ... 2^63-1") }
    }

    var parsedSeeds: [UInt64]? {
        // Seeds are recorded in traces as Int, so they stay below 2^63.
        let parts = seeds.split(separator: ",").map { UInt64($0.trimmingCharacters(in: .whitespaces)) }
        return parts.isEmpty || parts.contains(where: { $0 == nil || $0! > UInt64(Int.max) }) ? nil : parts.compactMap { $0 }
    }

    func run() throws {
        var reports: [ConformanceReport] = []
        if trace {
            for file in names {
                let t = try readTrace(file)
                if !json { progress("checking \(file) (\(t.policy.name), decoder \(t.provenance.decoder))") }
                reports.append(checkConformance(trace: t, name: file))
            }
        } else {
            let adapters: [CatalogAdapter]
            if all {
                adapters = ConformanceCatalog.all
            } else {
                adapters = try names.map { n in
                    guard let a = ConformanceCatalog.named(n) else {
                        throw ValidationError("unknown policy '\(n)'; known: \(PolicyCatalog.names.joined(separator: ", "))")
                    }
                    return a
                } + resolvePolicies(names: [], files: policyFile).map { CatalogAdapter(policy: $0) }
            }
            let options = ConformanceOptions(seeds: parsedSeeds ?? [1, 2])
            for (i, a) in adapters.enumerated() {
                progress("[\(i + 1)/\(adapters.count)] \(a.policy.name)")
                reports.append(checkConformance(a, options: options))
            }
        }
        if json {
            struct Envelope: Encodable {
                let schema = ConformanceReport.schema
                let schemaVersion = ConformanceReport.schemaVersion
                let passed: Bool
                @Nullable var seeds: [UInt64]?
                @Nullable var models: [String]?
                let reports: [ConformanceReport]
            }
            print(try ReportJSON.encode(Envelope(passed: reports.allSatisfy(\.passed), seeds: trace ? nil : parsedSeeds ?? [1, 2],
                                                 models: trace ? nil : ConformanceModel.standard.map(\.name), reports: reports)))
        } else {
            for r in reports { print(r.rendered(verbose: verbose)) }
            let failed = reports.filter { !$0.passed }.map(\.adapter)
            print(failed.isEmpty ? "all \(reports.count) passed" : "\(failed.count) of \(reports.count) failed: \(failed.joined(separator: ", "))")
        }
        if !reports.allSatisfy(\.passed) { throw ExitCode(1) }
    }
}
