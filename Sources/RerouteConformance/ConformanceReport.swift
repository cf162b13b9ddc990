import RerouteVerify

/// The verdict of one law for one adapter.
public struct LawResult: Sendable, Encodable, Equatable {
    public enum Status: String, Sendable, Codable { case passed, failed, waived, notApplicable = "not-applicable" }
    public var law: ConformanceLaw
    public var statement: String
    public var status: Status
    /// Inputs the law was checked on.
    public var checks: Int
    /// The first failures (at most a few per law).
    public var failures: [LawFailure]
    /// Why the law was waived, or why it does not apply.
    @Nullable public var note: String?
}

/// The conformance report of one adapter (`reroute conform --json` writes it).
public struct ConformanceReport: Sendable, Encodable {
    public static let schema = "reroute.conformance"
    public static let schemaVersion = 1
    public let adapter: String
    /// No law failed (stored, so the JSON report carries it).
    public let passed: Bool
    public let results: [LawResult]
    public var failed: [LawResult] { results.filter { $0.status == .failed } }

    public init(adapter: String, results: [LawResult]) {
        self.adapter = adapter
        self.results = results
        passed = results.allSatisfy { $0.status != .failed }
    }

    /// Human-readable: one line per law, then each failure with its input.
    public func rendered(verbose: Bool = false) -> String {
        var out = "conformance of \(adapter): \(passed ? "PASS" : "FAIL")\n"
        for r in results {
            let mark = switch r.status {
            case .passed: "ok    "
            case .failed: "FAIL  "
            case .waived: "waived"
            case .notApplicable: "n/a   "
            }
            let checks = r.status == .passed || r.status == .failed ? " (\(r.checks) checks)" : ""
            out += "  \(mark) \(r.law.rawValue)\(checks)\(r.note.map { ": \($0)" } ?? "")\n"
            if verbose || r.status == .failed { out += "         \(r.statement)\n" }
            for f in r.failures {
                out += "         input:    \(f.input)\n         at:       \(f.location)\n"
                out += "         expected: \(f.expected)\n         actual:   \(f.actual)\n"
            }
        }
        return out
    }
}
