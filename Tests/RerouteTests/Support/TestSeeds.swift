import Foundation

/// Seeds of the property tests and crash-safety trials: fixed seeds that every run checks,
/// plus one more — `REROUTE_SEED` when set (to replay a failure), else a fresh one from the
/// clock (so runs keep exploring). Every failure message names its seed and how to replay it.
enum TestSeeds {
    /// `REROUTE_SEED`, or a seed drawn from the clock for this test process.
    static let extra: UInt64 = {
        if let text = ProcessInfo.processInfo.environment["REROUTE_SEED"], let s = UInt64(text) { return s }
        return UInt64(Date().timeIntervalSince1970 * 1000) & 0xFFFF_FFFF
    }()

    /// `fixed`, then `extra` (when not already among them).
    static func with(_ fixed: [UInt64]) -> [UInt64] { fixed.contains(extra) ? fixed : fixed + [extra] }

    /// "seed S; replay: REROUTE_SEED=S tools/test.sh --filter NAME".
    static func replay(_ seed: UInt64, _ test: String) -> String { "seed \(seed); replay: REROUTE_SEED=\(seed) tools/test.sh --filter \(test)" }
}
