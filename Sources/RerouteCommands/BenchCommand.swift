import ArgumentParser
import Foundation
import RerouteBench

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the fast decoder: roofline fraction, policy speed-ups, decode bandwidth, memory.",
        discussion: HelpText.reflowed("""
            Build with -c release. Everything is measured in one run, and ratios are measured
            interleaved (A B A B) because the machine's speed drifts. Reports medians of --repeats.
            1. machine: cblas_sgemm GFLOP/s at the benchmark model's projection shapes (the practical
               roofline), the FMA peak (a register-only loop on every worker at once) at each vector
               width the CPU has (the physical limit), memcpy and streaming-read bandwidth, and one
               layer's projections at the routed layers' row counts through OpenBLAS and through the
               packed-weight kernel;
            2. fast vs reference prefill on two small models: the tiny LLaMA (golden/models/tiny-llama,
               d=64, call overhead dominates) and a random d=512, 8 heads, m=1408, 2 layers model on
               576 visual + 36 text tokens;
            3. dense prefill of a LLaVA-shaped model (random weights from a seed: d=2048, 16 heads,
               m=5632, --layers layers, 576 visual + 36 text tokens) as a fraction of the roofline
               and of the widest path's FMA peak, both measured interleaved with it, and its time on
               every other vector path (REROUTE_ISA=portable|avx2|avx512 sets the decoder's path);
            4. every policy at tiers 192/128/64, in --policy-rounds rounds (dense, then the tier's
               policies, each Reroute variant right after its base): prefill time / dense time next
               to the exact FLOPs ratio of the budget calculator, heap allocations per run, and
               Reroute's time / its base method's (medians of per-round ratios);
            4b. Reroute / its base method at LLaVA's depth: a 32-layer model with LLaVA's m/d and
               head dim (d=1024), the release schedules unremapped, adjacent pairs (--no-deep-pairs
               skips it);
            5. greedy decode: tokens/s and weight-streaming GB/s against the streaming-read bandwidth;
            6. peak resident memory and heap allocations per run (counted by the allocator linked
               into this executable: every thread and library, preparation and prefill).
            Prefill time counts the decoder layers, scoring and the last-position logits; the
            input embedding (and Nüwa's vision-side stage) is timed apart.
            """))

    @Option(help: "Repetitions per measurement (median reported).") var repeats = 5
    @Option(help: "Worker threads of the fast decoder (default: all cores).") var threads: Int?
    @Option(help: "Layers of the LLaVA-shaped model (8: the 32-layer schedules remap to [1,2,4,6]).") var layers = 8
    @Option(help: "Rounds of the policy table (each: dense, then every policy of a tier).") var policyRounds = 7
    @Flag(help: "Fewer policies and repetitions (a smoke run).") var quick = false
    @Flag(inversion: .prefixedNo, help: "Section 4b: Reroute vs base on a 32-layer model (about 3 minutes).") var deepPairs = true
    @Flag(help: "Run section 4b alone (with --policy-rounds rounds).") var deepPairsOnly = false
    @Option(help: "Model folder of the small model for fast vs reference.") var smallModel = "golden/models/tiny-llama"
    @Option(help: "Products with at most this many rows use the packed-weight kernel (0: OpenBLAS only; default: the measured crossover of the vector path, see SPEC 10.2).") var packedRowLimit: Int?

    func validate() throws {
        try OptionLimits.check("--repeats", repeats, OptionLimits.repeats)
        try OptionLimits.check("--threads", threads, OptionLimits.threads)
        try OptionLimits.check("--layers", layers, OptionLimits.benchLayers)
        try OptionLimits.check("--policy-rounds", policyRounds, OptionLimits.policyRounds)
        if let packedRowLimit { try OptionLimits.check("--packed-row-limit", packedRowLimit, OptionLimits.packedRowLimit) }
    }

    func run() throws {
        var suite = BenchSuite(out: { print($0) }, progress: { progress($0) })
        suite.repeats = repeats
        suite.threads = threads
        suite.layers = layers
        suite.policyRounds = policyRounds
        suite.quick = quick
        suite.deepPairs = deepPairs
        suite.smallModel = smallModel
        suite.packedRowLimit = packedRowLimit
        if deepPairsOnly {
            print("reroute bench --deep-pairs-only: \(ProcessInfo.processInfo.activeProcessorCount) cores")
            return try suite.deepPairsSection()
        }
        try suite.run()
    }
}
