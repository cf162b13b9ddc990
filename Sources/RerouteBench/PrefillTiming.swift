import Foundation
import RerouteModel
import RerouteRouting

/// How `reroute bench` and `reroute time` time one routed prefill.
public enum PrefillTiming {
    /// Seconds of the LLM prefill: every layer, the scoring and the last-position logits. The
    /// vision-side stage and the input embedding happen before the clock starts.
    public static func seconds<D: TraceableDecoder>(_ d: D, _ c: PromptCase, _ p: RoutingPolicy) throws -> Double {
        let prepared = try RoutedPrefill.prepare(decoder: d, case: c, policy: p)
        let t0 = DispatchTime.now().uptimeNanoseconds
        let (state, _) = try RoutedPrefill.execute(decoder: d, prepared)
        _ = d.prefillOutputs(state).lastLogits
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    /// `seconds`, the heap allocations of the whole run (the preparation included; nil where
    /// the counting allocator is not in effect) and the minor page faults of the process during
    /// it (every thread: pages mapped in and zeroed for the run's buffers).
    public static func counted<D: TraceableDecoder>(_ d: D, _ c: PromptCase, _ p: RoutingPolicy)
        throws -> (seconds: Double, allocations: Int?, pageFaults: Int) {
        var seconds = 0.0
        let faults0 = minorPageFaults()
        let (_, allocations) = try AllocationCounter.counting { seconds = try Self.seconds(d, c, p) }
        return (seconds, allocations, minorPageFaults() - faults0)
    }

    /// The process's minor page faults so far (getrusage).
    static func minorPageFaults() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_minflt
    }

    /// One policy's timings from `interleaved`.
    public struct PolicyTiming: Sendable {
        public var policy: String
        public var medianSeconds: Double
        public var minimumSeconds: Double
        /// Median heap allocations per run (nil where the counting allocator is not in effect).
        public var medianAllocations: Int?
        /// Median minor page faults of the process per run.
        public var medianPageFaults: Int
    }

    /// `warmup` untimed runs of the first policy, then `repeats` rounds, each running every
    /// policy once in order (interleaved, so the machine's drift hits all alike).
    public static func interleaved<D: TraceableDecoder>(_ d: D, _ c: PromptCase, policies: [RoutingPolicy], warmup: Int,
                                                        repeats: Int) throws -> [PolicyTiming] {
        guard let first = policies.first else { return [] }
        for _ in 0..<max(0, warmup) { _ = try counted(d, c, first) }
        var times = Array(repeating: [Double](), count: policies.count), counts = Array(repeating: [Double](), count: policies.count)
        var faults = Array(repeating: [Double](), count: policies.count)
        for _ in 0..<max(1, repeats) {
            for (i, p) in policies.enumerated() {
                let (seconds, allocations, pageFaults) = try counted(d, c, p)
                times[i].append(seconds)
                faults[i].append(Double(pageFaults))
                if let allocations { counts[i].append(Double(allocations)) }
            }
        }
        return policies.indices.map { i in
            PolicyTiming(policy: policies[i].name, medianSeconds: Statistics.median(times[i]), minimumSeconds: times[i].min()!,
                         medianAllocations: counts[i].isEmpty ? nil : Int(Statistics.median(counts[i])),
                         medianPageFaults: Int(Statistics.median(faults[i])))
        }
    }
}
