import Foundation

/// One compared object of a trace comparison.
public struct Finding: Sendable, Encodable, Equatable {
    public enum Kind: String, Sendable, Encodable {
        /// Within a tolerance (hidden states, logits, scores).
        case float
        /// Equal element by element (integers, positions, tokens, config, policy).
        case exact
        /// Equal as sets (routes, processed sets).
        case set
        /// Bit-identical (inputs).
        case bitwise
        /// A trace law (SPEC.md §11.2) on one of the two traces.
        case law
    }

    public enum Status: String, Sendable, Encodable {
        case passed
        case failed
        /// Differs, but within an acceptance rule: a tie flip, route slack, a greedy near-tie.
        case accepted
        /// Not compared, with the reason (after an accepted flip, or not asked for).
        case skipped
    }

    /// Dataset path, with a layer or step in brackets, e.g. `/prefill/hidden_states[3]`;
    /// `law:NAME (actual)` for trace laws.
    public var object: String
    public var kind: Kind
    public var status: Status
    /// One line: the metric, what differs, or why it was skipped.
    public var summary: String
    /// Offending elements or law failures, at most `maxReported`.
    public var details: [String] = []
    /// Tensor metrics (float findings).
    @Nullable public var tensor: TensorMetrics?
    /// Route metrics (set findings on decisions).
    @Nullable public var route: RouteMetrics?

    public var failed: Bool { status == .failed }

    public init(object: String, kind: Kind, status: Status, summary: String, details: [String] = [],
                tensor: TensorMetrics? = nil, route: RouteMetrics? = nil) {
        self.object = object
        self.kind = kind
        self.status = status
        self.summary = summary
        self.details = details
        self.tensor = tensor
        self.route = route
    }
}

/// Metrics of one compared tensor (numbers, for `--json`).
public struct TensorMetrics: Sendable, Encodable, Equatable {
    /// Which tolerance judged it, and its numbers.
    public var tolerance: String
    public var relative: Double
    public var rowFloor: Double
    public var nmseLimit: Double
    /// A failed gate (shape, NaN, Inf); the numbers below are then zero.
    @Nullable public var gate: String?
    @FiniteOrNull public var nmse: Double
    @FiniteOrNull public var maxAbsDifference: Double
    /// Largest `|a − b| / max(|a|, |b|)` over elements where either is non-zero.
    @FiniteOrNull public var maxRelDifference: Double
    /// Largest `|a − b| / bound`; ≤ 1 passes.
    @FiniteOrNull public var worstRatio: Double
    public var mismatched: Int
    public var total: Int
    /// The smallest row floor (with the same relative term) and NMSE limit that would have passed.
    @FiniteOrNull public var passingRowFloor: Double
    @FiniteOrNull public var passingNMSE: Double
    /// The worst elements (largest difference over bound first), at most `maxReported`.
    public var worst: [Mismatch]
}

/// Metrics of one compared route (a decision's kept and deferred sets together).
public struct RouteMetrics: Sendable, Encodable, Equatable {
    /// The index space of the lists below.
    public var indexSpace = "visual grid cell"
    public var layer: Int
    /// `1 − |A∩B| / |A∪B|` of the kept sets.
    public var jaccard: Double
    public var onlyExpected: [Int]
    public var onlyActual: [Int]
    /// Spread of the differing candidates' scores relative to the decision's largest (nil: not computable).
    @Nullable public var scoreGap: Double?
    public var epsilon: Double
    /// "tie-flip", "route-slack", or nil.
    @Nullable public var acceptance: String?
}

/// The judgement of one trace against another (SPEC.md §9.3): every finding in computation
/// order, the rules that judged them, and how routes were handled.
public struct Verdict: Sendable, Encodable {
    public static let schema = "reroute.diff"
    public static let schemaVersion = 2

    public enum Mode: String, Sendable, Encodable {
        /// Each trace as recorded; no route difference was accepted.
        case free
        /// Each trace as recorded, compared up to the first accepted route difference; what
        /// depends on it was skipped (a replay compares it).
        case stopped
        /// The actual side re-run with the expected side's routes forced after an accepted
        /// flip; the accepted flips of the free comparison are part of the verdict.
        case lockstep
    }

    public var expected: String
    public var actual: String
    public var rules: ComparisonRules
    public var mode: Mode
    public var findings: [Finding]

    public init(expected: String, actual: String, rules: ComparisonRules, mode: Mode, findings: [Finding]) {
        self.expected = expected
        self.actual = actual
        self.rules = rules
        self.mode = mode
        self.findings = findings
    }

    public var passed: Bool { !findings.contains(where: \.failed) }
    public var failures: [Finding] { findings.filter(\.failed) }
    public var accepted: [Finding] { findings.filter { $0.status == .accepted } }
    /// Accepted route differences (tie flips, route slack), one per decision.
    public var acceptedRoutes: [Finding] { accepted.filter { $0.route != nil } }
    public var skipped: [Finding] { findings.filter { $0.status == .skipped } }
    /// The first failing object, in computation order.
    public var firstDivergence: String? { failures.first?.object }

    /// Whether a lockstep replay may decide: a route difference was accepted and nothing
    /// failed before it (a later failure may be its consequence; an earlier one is a real
    /// divergence that forcing routes would hide).
    public var lockstepJustified: Bool {
        guard let first = findings.firstIndex(where: { $0.status == .accepted && $0.route != nil }) else { return false }
        return !findings[..<first].contains(where: \.failed)
    }
}

extension Verdict {
    /// h5diff-like text: the rules, failing, accepted and skipped objects with their details,
    /// then a summary line, the first divergence, and the failures again.
    public func render(verbose: Bool = false) -> String {
        var out = ["expected: \(expected)", "actual:   \(actual)", "preset:   \(rules.name) — \(rules.reason)",
                   "mode:     \(mode.rawValue)\(modeNote)", ""]
        for f in findings where verbose || f.status != .passed {
            let mark = switch f.status {
            case .passed: "  ok"
            case .failed: "DIFF"
            case .accepted: "  ~ "
            case .skipped: "skip"
            }
            out.append("\(mark) \(f.object) (\(f.kind.rawValue)): \(f.summary)")
            for d in f.details { out.append("        \(d)") }
        }
        out.append("")
        out.append("\(findings.count) object(s) compared: \(findings.count - failures.count - accepted.count - skipped.count) same, "
                   + "\(failures.count) differ, \(accepted.count) accepted, \(skipped.count) skipped")
        if let first = firstDivergence {
            out.append("first divergence: \(first)")
            out.append("differences:")
            out += failures.map { "  \($0.object): \($0.summary)" }
        }
        return out.joined(separator: "\n")
    }

    var modeNote: String {
        switch mode {
        case .free: ""
        case .stopped: " (compared up to the first accepted route difference; --replay --model DIR compares the rest like for like)"
        case .lockstep: " (the actual side re-run with the expected side's routes forced)"
        }
    }

    /// The versioned JSON report (`reroute.diff` v2, SPEC.md §9.6): snake_case keys, numbers as numbers.
    public func json() throws -> String {
        struct Envelope: Encodable {
            var schema: String, schemaVersion: Int, passed: Bool, mode: Mode
            @Nullable var firstDivergence: String?
            var expected: String, actual: String, rules: ComparisonRules
            var counts: [String: Int]
            var findings: [Finding]
        }
        let counts = ["compared": findings.count, "failed": failures.count, "accepted": accepted.count, "skipped": skipped.count]
        return try ReportJSON.encode(Envelope(schema: Self.schema, schemaVersion: Self.schemaVersion, passed: passed, mode: mode,
                                              firstDivergence: firstDivergence, expected: expected, actual: actual, rules: rules,
                                              counts: counts, findings: findings))
    }
}

/// An optional a JSON report always writes: its value, or null (so passing and failing
/// reports have the same keys).
@propertyWrapper public struct Nullable<Value: Encodable & Sendable & Equatable>: Encodable, Sendable, Equatable {
    public var wrappedValue: Value?
    public init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if let v = wrappedValue { try c.encode(v) } else { try c.encodeNil() }
    }
}

/// A number a JSON report writes as a number, or null when it is not finite (JSON has no
/// infinity: an unbounded metric, such as the NMSE against an all-zero tensor).
@propertyWrapper public struct FiniteOrNull: Encodable, Sendable, Equatable {
    public var wrappedValue: Double
    public init(wrappedValue: Double) { self.wrappedValue = wrappedValue }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        if wrappedValue.isFinite { try c.encode(wrappedValue) } else { try c.encodeNil() }
    }
}

/// `s` padded with spaces to `n` characters (at least one space after it): the column rule of
/// every text table.
public func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }

extension Nullable: Decodable where Value: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        wrappedValue = c.decodeNil() ? nil : try c.decode(Value.self)
    }
}

extension FiniteOrNull: Decodable {
    /// null reads back as +infinity (the only non-finite value the metrics take).
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        wrappedValue = c.decodeNil() ? .infinity : try c.decode(Double.self)
    }
}

/// The one JSON style of every `--json` report: snake_case keys, sorted, pretty-printed.
public enum ReportJSON {
    public static func encode<T: Encodable>(_ value: T) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        enc.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: try enc.encode(value), as: UTF8.self)
    }
}
