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

    /// `seconds` and the heap allocations of the whole run (the preparation included; nil
    /// where the counting allocator is not in effect).
    public static func counted<D: TraceableDecoder>(_ d: D, _ c: PromptCase, _ p: RoutingPolicy) throws -> (seconds: Double, allocations: Int?) {
        var seconds = 0.0
        let (_, allocations) = try AllocationCounter.counting { seconds = try Self.seconds(d, c, p) }
        return (seconds, allocations)
    }
}
