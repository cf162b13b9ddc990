import ArgumentParser
import CBLAS
import Foundation
import RerouteBench
import RerouteFast
import RerouteFixtures
import RerouteHDF5
import RerouteModel
import RerouteRouting
import RerouteTrace
import RerouteVerify

struct TimeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "time",
        abstract: "Time the fast decoder's prefill of a case under one or more policies (used by tools/bench_torch.py).",
        discussion: HelpText.reflowed("""
            Loads the model folder and the case (/inputs of an HDF5 file, or with --grid a random
            case of visual embeddings: LLaVA-1.5's 35 prefix tokens, the grid, 1 suffix token), runs
            --warmup prefills, then --repeats prefills per policy, interleaved across policies, and
            prints one line per policy: name, median milliseconds, minimum milliseconds, median
            heap allocations per run (preparation and prefill; every thread and library, counted
            by the allocator linked into this executable; "-" where it cannot count), median minor
            page faults per run (pages the run mapped in fresh; the executable keeps freed buffers
            for reuse, so after the warm-up this stays small). Then the
            peak resident memory of the process. --weights mapped-bf16 keeps BF16 matrices in the
            memory-mapped checkpoint (real-size models in little memory; SPEC.md §10.2).
            --peak also measures the FMA peak of the decoder's vector path on its workers (the
            register-only loop of `reroute bench`, best of 10 windows of about 65 ms before the
            warm-up and 10 after the timings) and prints, after the policy lines, the peak and for
            each policy its FLOPs (budget calculator, the case's tokens), its median time as a
            fraction of the peak and as a multiple of FLOPs / peak (the physical lower bound).
            Build with -c release.
            """))
    @Option(help: "Model folder.") var model: String
    @Option(name: .customLong("case"), help: "HDF5 file with an /inputs group.") var caseFile: String?
    @Option(help: "Instead of --case: a random case with a ROWSxCOLS image (or FRAMESxROWSxCOLS video) of embeddings.") var grid: ImageGrid?
    @Option(help: "Weight storage: f32 or mapped-bf16.") var weights = "f32"
    @Option(help: "Untimed prefills before timing.") var warmup = 1
    @Option(name: .customLong("policy"), help: "Policy name (repeatable; default dense).") var policies: [String] = []
    @Option(help: "Policy file (reroute.policy v1; repeatable).") var policyFile: [String] = []
    @Option(help: "Timed prefills per policy.") var repeats = 3
    @Option(help: "Worker threads of the fast decoder (default: all cores).") var threads: Int?
    @Flag(help: "Also measure the FMA peak and print each policy's time against FLOPs / peak.") var peak = false

    func validate() throws {
        try OptionLimits.check("--warmup", warmup, OptionLimits.warmup)
        try OptionLimits.check("--repeats", repeats, OptionLimits.repeats)
        try OptionLimits.check("--threads", threads, OptionLimits.threads)
        if (caseFile == nil) == (grid == nil) { throw ValidationError("give --case FILE or --grid ROWSxCOLS (one of them)") }
        if !["f32", "mapped-bf16"].contains(weights) { throw ValidationError("--weights: f32 or mapped-bf16, got '\(weights)'") }
    }

    func run() throws {
        let t0 = Date()
        let weights = try ModelWeights.load(directory: URL(fileURLWithPath: model), storage: self.weights == "f32" ? .float32 : .mappedBF16)
        progress(String(format: "loaded %@ (%d layers, d=%d) in %.1f s, weights %@", model, weights.config.layers,
                        weights.config.hiddenSize, Date().timeIntervalSince(t0), self.weights))
        let c: PromptCase
        if let caseFile {
            c = try readingUntrusted(caseFile, kind: "case") { try PromptCaseIO.read(try HDF5File(readingFrom: caseFile), name: "case") }
        } else {
            c = RandomCase.make(config: weights.config, name: "bench", grid: grid!, prefix: 35, suffix: 1,
                                       visual: .embeddings, decodeSteps: 0, seed: 7)
        }
        try c.validate(for: weights.config, projector: weights.projector, file: caseFile ?? "<random case>")
        let ps = try resolvePolicies(names: policies.isEmpty && policyFile.isEmpty ? ["dense"] : policies, files: policyFile)
        for (p, f) in zip(ps.suffix(policyFile.count), policyFile) { try PolicyFile.check(p, layers: weights.config.layers, file: f) }
        let fast = FastDecoder(weights: weights, options: .init(recordHiddenStates: false, threads: threads))
        let peakBefore = peak ? MachineProbes.fmaPeak(fast.isa, threads: fast.workers, repeats: 10) : 0
        let results = try PrefillTiming.interleaved(fast, c, policies: ps, warmup: warmup, repeats: repeats)
        for r in results {
            print(String(format: "%@ %.1f %.1f %@ %d", r.policy, r.medianSeconds * 1e3, r.minimumSeconds * 1e3,
                         r.medianAllocations.map(String.init) ?? "-", r.medianPageFaults))
        }
        if peak {
            let after = MachineProbes.fmaPeak(fast.isa, threads: fast.workers, repeats: 10), best = max(peakBefore, after)
            print(String(format: "FMA peak, %@ path, %d workers: %.1f GFLOP/s (best window: %.1f before the prefills, %.1f after)",
                         fast.isa.rawValue, fast.workers, best / 1e9, peakBefore / 1e9, after / 1e9))
            for (r, p) in zip(results, ps) {
                let flops = try BudgetCalculator.report(config: weights.config, policy: p, textTokens: c.sequenceLength - c.visual.count,
                                                        grid: c.grid, bytesPerElement: 4).totalFlops
                print(String(format: "%@: %.4g TFLOP in %.1f ms (median) = %.1f GFLOP/s = %.1f %% of the peak = %.3f x FLOPs / peak",
                             r.policy, flops / 1e12, r.medianSeconds * 1e3, flops / r.medianSeconds / 1e9, 100 * flops / r.medianSeconds / best,
                             r.medianSeconds / (flops / best)))
            }
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        progress("peak resident memory: \(usage.ru_maxrss / 1024) MiB")
    }
}
