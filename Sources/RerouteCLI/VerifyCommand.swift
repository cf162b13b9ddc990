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
        discussion: """
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
            """)

    @Option(name: .long, help: "Folder holding one subfolder per model.")
    var models: String?

    @Option(name: .long, help: "Golden traces folder (with MANIFEST.json); 'none' to skip.")
    var traces: String = "golden/traces"

    @Option(name: .long, parsing: .upToNextOption, help: "Decoders to check against the golden traces: reference, fast, or both.")
    var decoders: [DecoderKind] = DecoderKind.allCases

    func validate() throws {
        if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1, got \(jobs)") }
        if maxReported < 0 { throw ValidationError("--max-reported must be at least 0, got \(maxReported)") }
    }

    @Flag(name: .shortAndLong, help: "Print every compared tensor, not only failures.")
    var verbose = false

    @Option(name: .long, help: "Offending elements to print per failing tensor.")
    var maxReported = 8

    @Option(name: .shortAndLong, help: "Checks run in parallel (default: the number of cores).")
    var jobs: Int?

    @Flag(help: "Machine-readable JSON report on standard output (instead of the tables).")
    var json = false

    func run() throws {
        let options = VerifyOptions(modelsRoot: models.map { URL(fileURLWithPath: $0) } ?? GoldenStore.defaultModelsRoot(),
                                    traces: traces == "none" ? nil : URL(fileURLWithPath: traces), decoders: decoders,
                                    jobs: jobs ?? ProcessInfo.processInfo.activeProcessorCount)
        let result = try VerifyJob.run(options, progress: { progress($0) })
        print(json ? try result.json() : VerifyReport.render(result, verbose: verbose, maxReported: maxReported))
        if !result.passed { throw ExitCode(1) }
    }
}


/// Text rendering of verification results: a table, then every failure in detail.
enum VerifyReport {
    static func render(_ r: VerifyResult, verbose: Bool, maxReported: Int) -> String {
        var out = [renderCases(r.transformers, verbose: verbose, maxReported: maxReported)]
        if let m = r.manifest {
            out.append("\ngolden traces: \(m.folder) (\(m.files) files, generator \(m.generator), seed \(m.seed))")
            out += r.manifestProblems.map { "FAIL manifest: \($0)" }
            out.append(pad("trace", 34) + pad("decoder", 10) + pad("mode", 9) + pad("preset", 10) + pad("objects", 8) + pad("accepted", 9)
                       + "status")
            for c in r.traceChecks {
                out.append(pad(c.file, 34) + pad(c.decoder, 10) + pad(c.mode, 9) + pad(c.verdict.rules.name, 10)
                           + pad("\(c.verdict.findings.count)", 8) + pad("\(c.verdict.accepted.count)", 9) + (c.passed ? "ok" : "FAILED"))
            }
            for c in r.traceChecks where !c.passed {
                out.append("\nFAIL \(c.file) (\(c.decoder), \(c.mode))")
                out.append(c.verdict.render(verbose: verbose))
            }
        }
        out.append(String(format: "verify: %d check(s), %d passed, %d failed (%.1f s)", r.checkCount, r.checkCount - r.failureCount,
                          r.failureCount, r.seconds))
        return out.joined(separator: "\n")
    }

    /// Rows of the transformers tensors are sequence indices (hidden states, attention, prefill
    /// logits) or decode steps (step logits); columns are the vector's elements.
    static func renderCases(_ results: [TransformersCheck], verbose: Bool, maxReported: Int) -> String {
        var lines: [String] = []
        lines.append(pad("model", 15) + pad("case", 28) + pad("run", 9) + pad("tensors", 9) + pad("worst/bound", 13)
                     + pad("max NMSE", 11) + pad("tokens", 8) + "status")
        for r in results {
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
        for r in results {
            for t in r.tensors where verbose || !t.passed {
                var line = "\(t.passed ? "  ok" : "FAIL") \(r.model)/\(r.caseName) \(t.name): "
                if let gate = t.gateFailure {
                    line += gate
                } else {
                    line += String(format: "NMSE %.2e (limit %.0e), worst %.3f of bound, mismatched %d / %d (%.2f%%)",
                                   t.nmse, t.nmseLimit, t.worstRatio, t.mismatchCount, t.total,
                                   t.total > 0 ? 100 * Double(t.mismatchCount) / Double(t.total) : 0)
                }
                lines.append(line)
                if !t.passed { failures.append(line) }
                for m in t.mismatches.prefix(maxReported) {
                    let detail = String(format: "      [row %d, column %d] expected %.9g actual %.9g difference %.3g bound %.3g",
                                        m.row, m.column, m.expected, m.actual, m.difference, m.bound)
                    lines.append(detail)
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
