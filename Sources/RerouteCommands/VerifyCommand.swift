import ArgumentParser
import Foundation
import RerouteFast
import RerouteModel
import RerouteReference
import RerouteTrace
import RerouteVerify

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "The main job: check the reference decoder against transformers and every golden trace.",
        discussion: HelpText.reflowed("""
            1. For each model folder under --models (config.json, safetensors, cases/*.h5), runs the
               scalar reference decoder on every case and compares with the outputs Hugging Face
               transformers produced (tools/make_tiny_models.py): hidden states entering every layer,
               last-row attention, logits at every prefill position and at each greedy step, within
               the tolerances of SPEC.md §7, and the greedy tokens exactly.
            2. Checks --traces against its MANIFEST.json (SHA-256 of every file), then re-runs every
               golden trace's policy on its inputs and diffs the result against the golden
               (SPEC.md §9.3). Route differences that are tie flips within ε are replayed in lockstep
               (routes forced from the golden); the table says which mode decided.
            Files are read first (one at a time: HDF5 is not thread-safe), then the checks run in
            parallel on --jobs workers (default: one per core; the fast decoder then uses one thread
            per job). Progress lines go to standard error as checks finish; the tables and the
            summary on standard output are always in the same order, whatever the job count.
            Prints tables and a summary. Exit 0 if all pass, 1 if any differs, 2 on an input error.
            """))

    @Option(name: .long, help: "Folder holding one subfolder per model.")
    var models: String?

    @Option(name: .long, help: "Golden traces folder (with MANIFEST.json); 'none' to skip.")
    var traces: String = "golden/traces"

    @Option(name: .long, parsing: .upToNextOption, help: "Decoders to check against the golden traces: reference, fast, or both.")
    var decoders: [DecoderKind] = DecoderKind.allCases

    func validate() throws {
        try OptionLimits.check("--jobs", jobs, OptionLimits.jobs)
        if shard != nil, report == nil { throw ValidationError("--shard needs --report FILE (the shard's JSON report, for `reroute report merge`)") }
        try OptionLimits.check("--max-reported", maxReported, OptionLimits.maxReported)
    }

    @Flag(name: .shortAndLong, help: "Print every compared tensor, not only failures.")
    var verbose = false

    @Option(name: .long, help: "Offending elements to print per failing tensor.")
    var maxReported = 8

    @Option(name: .shortAndLong, help: "Checks run in parallel (default: the number of cores).")
    var jobs: Int?

    @Flag(help: "Machine-readable JSON report on standard output (instead of the tables).")
    var json = false

    @Option(help: "Run only shard I of N (I/N, 0-based): a deterministic 1/N of the checks; needs --report.")
    var shard: Shard?

    @Option(help: "Also write the JSON report (reroute.verify v2) to this file, atomically (`reroute report merge` merges shards).")
    var report: String?

    @Flag(help: "Replace an existing --report file.")
    var overwrite = false

    func run() throws {
        if let report {
            try FilePaths.checkOutput(report, folders: [models ?? GoldenStore.defaultModelsRoot().path] + (traces == "none" ? [] : [traces]),
                                      overwrite: overwrite)
        }
        let options = VerifyOptions(modelsRoot: models.map { URL(fileURLWithPath: $0) } ?? GoldenStore.defaultModelsRoot(),
                                    traces: traces == "none" ? nil : URL(fileURLWithPath: traces), decoders: decoders,
                                    jobs: jobs ?? ProcessInfo.processInfo.activeProcessorCount, shard: shard)
        let data = VerifyReportData(try VerifyJob.run(options, progress: { progress($0) }))
        if let report { try writeAtomically(try data.json() + "\n", to: report, overwrite: overwrite) }
        print(json ? try data.json() : data.render(verbose: verbose, maxReported: maxReported))
        if !data.passed { throw ExitCode(1) }
    }
}
