import Foundation
import RerouteModel

/// A shard of the verify job: the jobs whose index `k` (cases first, then golden trace runs,
/// in their fixed order) has `k % count == index`; shard 0 also checks the manifest.
public struct Shard: Sendable, Codable, Equatable {
    public var index: Int
    public var count: Int

    public init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }

    /// The most shards a run splits into.
    public static let maxCount = 10_000

    /// Whether 0 ≤ index < count ≤ `maxCount`.
    public var isValid: Bool { (1...Self.maxCount).contains(count) && (0..<count).contains(index) }

    /// Parses `I/N` (0 ≤ I < N ≤ 10000).
    public init?(parsing text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]) else { return nil }
        self.init(index: i, count: n)
        guard isValid else { return nil }
    }

    public func owns(job k: Int) -> Bool { k % count == index }
}

/// The verify report as data (`reroute.verify` v2, SPEC.md §9.6): what `--json` and
/// `--report` write, what `reroute report merge` reads, and what the text tables are drawn
/// from, so a merged report prints exactly what an unsharded run prints.
public struct VerifyReportData: Codable, Sendable {
    public struct Tensor: Codable, Sendable {
        public var name: String
        public var passed: Bool
        @Nullable public var gate: String?
        @FiniteOrNull public var nmse: Double
        public var nmseLimit: Double
        @FiniteOrNull public var worstRatio: Double
        public var mismatched: Int
        public var total: Int
        public var worst: [Mismatch]
    }

    public struct Case: Codable, Sendable {
        public var job: Int
        public var model: String
        public var caseName: String
        public var file: String
        public var passed: Bool
        public var tensors: [Tensor]
        public var exact: [ExactComparison]
    }

    public struct FindingLine: Codable, Sendable {
        public var object: String
        public var summary: String
    }

    public struct Run: Codable, Sendable {
        public var job: Int
        public var file: String
        public var model: String
        public var policy: String
        public var decoder: String
        public var mode: String
        public var preset: String
        public var passed: Bool
        @Nullable public var firstDivergence: String?
        public var compared: Int
        public var failed: Int
        public var accepted: Int
        public var skipped: Int
        public var failures: [FindingLine]
        public var acceptedFindings: [FindingLine]
        /// The verdict as text (what `reroute diff` prints), for failed runs; empty otherwise.
        public var report: String
    }

    public struct Manifest: Codable, Sendable, Equatable {
        public var folder: String
        public var files: Int
        public var generator: String
        public var seed: Int
        public var problems: [String]
    }

    public var schema = "reroute.verify"
    public var schemaVersion = 2
    @Nullable public var shard: Shard?
    public var passed: Bool
    public var checks: Int
    public var failed: Int
    public var seconds: Double
    @Nullable public var manifest: Manifest?
    public var transformersCases: [Case]
    public var goldenTraces: [Run]

    init(shard: Shard?, manifest: Manifest?, cases: [Case], runs: [Run], seconds: Double) {
        self.shard = shard
        self.manifest = manifest
        transformersCases = cases
        goldenTraces = runs
        self.seconds = seconds
        checks = cases.count + runs.count + (manifest == nil ? 0 : 1)
        failed = cases.filter { !$0.passed }.count + runs.filter { !$0.passed }.count + ((manifest?.problems.isEmpty ?? true) ? 0 : 1)
        passed = failed == 0
    }

    public init(_ r: VerifyResult) {
        let cases = zip(r.caseJobs, r.transformers).map { job, t in
            Case(job: job, model: t.model, caseName: t.caseName, file: t.file, passed: t.passed,
                 tensors: t.tensors.map { Tensor(name: $0.name, passed: $0.passed, gate: $0.gateFailure, nmse: $0.nmse, nmseLimit: $0.nmseLimit,
                                                worstRatio: $0.worstRatio, mismatched: $0.mismatchCount, total: $0.total, worst: $0.mismatches) },
                 exact: t.exact)
        }
        let runs = zip(r.traceJobs, r.traceChecks).map { job, c in
            Run(job: job, file: c.file, model: c.model, policy: c.policy, decoder: c.decoder, mode: c.mode, preset: c.verdict.rules.name,
                passed: c.passed, firstDivergence: c.verdict.firstDivergence, compared: c.verdict.findings.count,
                failed: c.verdict.failures.count, accepted: c.verdict.accepted.count, skipped: c.verdict.skipped.count,
                failures: c.verdict.failures.map { FindingLine(object: $0.object, summary: $0.summary) },
                acceptedFindings: c.verdict.accepted.map { FindingLine(object: $0.object, summary: $0.summary) },
                report: c.passed ? "" : c.verdict.render())
        }
        let manifest = r.manifest.map { Manifest(folder: $0.folder, files: $0.files, generator: $0.generator, seed: $0.seed, problems: r.manifestProblems) }
        self.init(shard: r.shard, manifest: manifest, cases: cases, runs: runs, seconds: r.seconds)
    }

    public func json() throws -> String { try ReportJSON.encode(self) }

    /// Reads a report written by `json()` (`file` names it in errors).
    public static func read(_ data: Data, file: String) throws -> VerifyReportData {
        let dec = JSONDecoder()
        dec.keyDecodingStrategy = .convertFromSnakeCase
        do {
            let r = try dec.decode(VerifyReportData.self, from: data)
            guard r.schema == "reroute.verify", r.schemaVersion == 2 else {
                throw InputError(.badValue, file: file, object: "schema", "'\(r.schema)' v\(r.schemaVersion); expected reroute.verify v2")
            }
            try r.validate(file: file)
            return r
        } catch let e as InputError {
            throw e
        } catch {
            throw InputError(.badJSON, file: file, "not a reroute.verify report: \(error)")
        }
    }

    /// The most jobs one verify run holds (cases and golden trace runs).
    public static let maxJobs = 1 << 20

    /// A report read from a file holds what a verify run writes: its shard (if any) is
    /// `I/N` with 0 ≤ I < N ≤ 10000; job indices are 0 ..< 2^20 and none repeats; counts,
    /// rows and columns are ≥ 0 with mismatched ≤ total (the seed and exact values are only
    /// printed or compared, any value); `checks`, `failed` and `passed` are what its entries give.
    func validate(file: String) throws {
        func bad(_ object: String, _ why: String) -> InputError { InputError(.badValue, file: file, object: object, why) }
        if let s = shard, !s.isValid {
            let object = (1...Shard.maxCount).contains(s.count) ? "shard.index" : "shard.count"
            throw bad(object, "\(s.index)/\(s.count); expected I/N with 0 ≤ I < N ≤ \(Shard.maxCount)")
        }
        var jobs = Set<Int>()
        func job(_ k: Int, _ object: String) throws {
            guard (0..<Self.maxJobs).contains(k) else { throw bad(object, "job \(k) outside 0 ..< \(Self.maxJobs)") }
            guard jobs.insert(k).inserted else { throw bad(object, "job \(k) appears twice") }
        }
        func count(_ n: Int, _ object: String) throws {
            guard n >= 0 else { throw bad(object, "negative count \(n)") }
        }
        for (i, c) in transformersCases.enumerated() {
            try job(c.job, "transformers_cases[\(i)].job")
            for (j, t) in c.tensors.enumerated() {
                let at = "transformers_cases[\(i)].tensors[\(j)]"
                try count(t.total, at + ".total")
                guard (0...t.total).contains(t.mismatched) else { throw bad(at + ".mismatched", "\(t.mismatched) of \(t.total) elements") }
                for (k, m) in t.worst.enumerated() {
                    try count(m.row, at + ".worst[\(k)].row")
                    try count(m.column, at + ".worst[\(k)].column")
                }
            }
        }
        for (i, r) in goldenTraces.enumerated() {
            try job(r.job, "golden_traces[\(i)].job")
            for (name, n) in [("compared", r.compared), ("failed", r.failed), ("accepted", r.accepted), ("skipped", r.skipped)] {
                try count(n, "golden_traces[\(i)].\(name)")
            }
        }
        if let m = manifest { try count(m.files, "manifest.files") }
        let recounted = VerifyReportData(shard: shard, manifest: manifest, cases: transformersCases, runs: goldenTraces, seconds: seconds)
        for (name, stated, held) in [("checks", checks, recounted.checks), ("failed", failed, recounted.failed)] where stated != held {
            throw bad(name, "\(stated), but the report's entries give \(held)")
        }
        if passed != recounted.passed { throw bad("passed", "\(passed), but the report's entries give \(recounted.passed)") }
        guard seconds.isFinite, seconds >= 0 else { throw bad("seconds", "\(seconds); expected a finite time ≥ 0") }
    }

    /// Merges the reports of all shards of one run into the report an unsharded run gives
    /// (`seconds`: the longest shard's). Throws when a shard is missing, repeated, or from a
    /// different split.
    public static func merge(_ reports: [(file: String, report: VerifyReportData)]) throws -> VerifyReportData {
        guard let first = reports.first else { throw InputError(.badValue, file: "(none)", "no reports to merge") }
        var seen: [Int: String] = [:]
        for (file, r) in reports {
            guard let s = r.shard else { throw InputError(.badValue, file: file, object: "shard", "not a shard report (null)") }
            guard s.count == first.report.shard?.count else {
                throw InputError(.badValue, file: file, object: "shard", "shard \(s.index)/\(s.count) of another split than \(first.file)")
            }
            if let other = seen[s.index] { throw InputError(.badValue, file: file, object: "shard", "shard \(s.index)/\(s.count) also in \(other)") }
            seen[s.index] = file
        }
        let n = first.report.shard!.count
        if let missing = (0..<n).first(where: { seen[$0] == nil }) {
            throw InputError(.badValue, file: first.file, object: "shard", "shard \(missing)/\(n) is missing")
        }
        let manifest = reports.compactMap(\.report.manifest).first
        return VerifyReportData(shard: nil, manifest: manifest,
                                cases: reports.flatMap(\.report.transformersCases).sorted { $0.job < $1.job },
                                runs: reports.flatMap(\.report.goldenTraces).sorted { $0.job < $1.job },
                                seconds: reports.map(\.report.seconds).max() ?? 0)
    }
}

extension VerifyReportData {
    /// The text report: the transformers table and its failures, the golden-trace table and
    /// every failed verdict, then the summary line.
    public func render(verbose: Bool = false, maxReported: Int = 8) -> String {
        var out = [renderCases(verbose: verbose, maxReported: maxReported)]
        if let m = manifest {
            out.append("\ngolden traces: \(m.folder) (\(m.files) files, generator \(m.generator), seed \(m.seed))")
            out += m.problems.map { "FAIL manifest: \($0)" }
        }
        if manifest != nil || !goldenTraces.isEmpty {
            out.append(pad("trace", 34) + pad("decoder", 10) + pad("mode", 9) + pad("preset", 10) + pad("objects", 8) + pad("accepted", 9)
                       + "status")
            for c in goldenTraces {
                out.append(pad(c.file, 34) + pad(c.decoder, 10) + pad(c.mode, 9) + pad(c.preset, 10) + pad("\(c.compared)", 8)
                           + pad("\(c.accepted)", 9) + (c.passed ? "ok" : "FAILED"))
            }
            for c in goldenTraces where !c.passed {
                out.append("\nFAIL \(c.file) (\(c.decoder), \(c.mode))")
                out.append(c.report)
            }
        }
        out.append(String(format: "verify: %d check(s), %d passed, %d failed (%.1f s)", checks, checks - failed, failed, seconds))
        return out.joined(separator: "\n")
    }

    /// Rows of the transformers tensors are sequence indices (hidden states, attention, prefill
    /// logits) or decode steps (step logits); columns are the vector's elements.
    func renderCases(verbose: Bool, maxReported: Int) -> String {
        var lines: [String] = []
        lines.append(pad("model", 15) + pad("case", 28) + pad("run", 9) + pad("tensors", 9) + pad("worst/bound", 13)
                     + pad("max NMSE", 11) + pad("tokens", 8) + "status")
        for r in transformersCases {
            let runs = Array(Set(r.tensors.map { String($0.name.split(separator: "/")[0]) })).sorted()
            for run in runs {
                let ts = r.tensors.filter { $0.name.hasPrefix(run + "/") }
                let ex = r.exact.filter { $0.name.hasPrefix(run + "/") }
                let ok = ts.allSatisfy(\.passed) && ex.allSatisfy(\.passed)
                lines.append(pad(r.model, 15) + pad(r.caseName, 28) + pad(run, 9) + pad("\(ts.count)", 9)
                             + pad(String(format: "%.3f", ts.map(\.worstRatio).max() ?? 0), 13)
                             + pad(String(format: "%.1e", ts.map(\.nmse).max() ?? 0), 11)
                             + pad(ex.allSatisfy(\.passed) ? "same" : "DIFFER", 8) + (ok ? "ok" : "FAILED"))
            }
        }
        var failures: [String] = []
        for r in transformersCases {
            for t in r.tensors where verbose || !t.passed {
                var line = "\(t.passed ? "  ok" : "FAIL") \(r.model)/\(r.caseName) \(t.name): "
                if let gate = t.gate {
                    line += gate
                } else {
                    line += String(format: "NMSE %.2e (limit %.0e), worst %.3f of bound, mismatched %d / %d (%.2f%%)",
                                   t.nmse, t.nmseLimit, t.worstRatio, t.mismatched, t.total,
                                   t.total > 0 ? 100 * Double(t.mismatched) / Double(t.total) : 0)
                }
                lines.append(line)
                if !t.passed { failures.append(line) }
                for m in t.worst.prefix(maxReported) {
                    lines.append(String(format: "      [row %d, column %d] expected %.9g actual %.9g difference %.3g bound %.3g",
                                        m.row, m.column, m.expected, m.actual, m.difference, m.bound))
                }
            }
            for e in r.exact where !e.passed {
                let line = "FAIL \(r.model)/\(r.caseName) \(e.name): expected \(e.expected), actual \(e.actual)"
                lines.append(line)
                failures.append(line)
            }
        }
        if !failures.isEmpty {
            lines.append("")
            lines.append("Failures (\(failures.count)):")
            lines += failures.map { "  " + $0 }
        }
        return lines.joined(separator: "\n")
    }
}
