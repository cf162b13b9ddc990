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
            Prints tables and a summary. Exit 0 if all pass, 1 if any differs, 2 on an input error.
            """)

    @Option(name: .long, help: "Folder holding one subfolder per model.")
    var models: String?

    @Option(name: .long, help: "Golden traces folder (with MANIFEST.json); 'none' to skip.")
    var traces: String = "golden/traces"

    @Option(name: .long, help: "Decoders to check against the golden traces: reference, fast, or both (comma-separated).")
    var decoders: String = "reference,fast"

    var decoderNames: [String] { decoders.split(separator: ",").map(String.init) }

    func validate() throws {
        if let bad = decoderNames.first(where: { !["reference", "fast"].contains($0) }) {
            throw ValidationError("unknown decoder '\(bad)'; available: reference, fast")
        }
    }

    @Flag(name: .shortAndLong, help: "Print every compared tensor, not only failures.")
    var verbose = false

    @Option(name: .long, help: "Offending elements to print per failing tensor.")
    var maxReported = 8

    func run() throws {
        let root = models.map { URL(fileURLWithPath: $0) } ?? GoldenStore.defaultModelsRoot()
        let found = try GoldenStore.models(in: root)
        if found.isEmpty { throw InputError(.fileNotFound, file: root.path, "no model folders (with config.json) here") }
        var results: [TransformersCheck] = []
        let start = Date()
        for model in found {
            progress("loading \(model.name) from \(model.directory.path)")
            let decoder = ReferenceDecoder(weights: try ModelWeights.load(directory: model.directory))
            for (i, path) in model.casePaths.enumerated() {
                let t0 = Date()
                let reference = try HFReferenceCase.load(path: path)
                let check = try TransformersCheck.run(decoder: decoder, model: model.name, reference: reference)
                results.append(check)
                progress(String(format: "  [%d/%d] %@ %@ (%.1f s)", i + 1, model.casePaths.count, check.caseName,
                                check.passed ? "ok" : "DIFFERS", Date().timeIntervalSince(t0)))
            }
        }
        print(VerifyReport.render(results, verbose: verbose, maxReported: maxReported))
        var failed = results.filter { !$0.passed }.count
        var total = results.count
        if traces != "none" {
            let (n, bad) = try verifyTraces(modelsRoot: root)
            total += n
            failed += bad
        }
        print(String(format: "verify: %d check(s), %d passed, %d failed (%.1f s)", total, total - failed, failed,
                     Date().timeIntervalSince(start)))
        if failed > 0 { throw ExitCode(1) }
    }

    /// Golden traces: manifest, then each trace re-run and diffed. Returns (checks, failures).
    func verifyTraces(modelsRoot: URL) throws -> (Int, Int) {
        let dir = URL(fileURLWithPath: traces)
        let manifest = try GoldenManifest.load(from: dir)
        let problems = manifest.problems(in: dir)
        print("\ngolden traces: \(dir.path) (\(manifest.files.count) files, generator \(manifest.generatorCommit), seed \(manifest.seed))")
        for p in problems { print("FAIL manifest: \(p)") }
        var weightsByModel: [String: ModelWeights] = [:]
        var checks: [TraceCheck] = []
        for (i, entry) in manifest.files.enumerated() {
            let path = dir.appendingPathComponent(entry.path).path
            let golden = try Trace.read(from: path)
            if weightsByModel[entry.model] == nil {
                let mdir = modelsRoot.appendingPathComponent(entry.model)
                guard FileManager.default.fileExists(atPath: mdir.appendingPathComponent("config.json").path) else {
                    throw VerifyError.missingModel(path, entry.model)
                }
                weightsByModel[entry.model] = try ModelWeights.load(directory: mdir)
            }
            let weights = weightsByModel[entry.model]!
            for name in decoderNames {
                let check = name == "fast"
                    ? try TraceCheck.run(decoder: FastDecoder(weights: weights), golden: golden, file: entry.path,
                                         options: .fastVsReference(weights.config))
                    : try TraceCheck.run(decoder: ReferenceDecoder(weights: weights), golden: golden, file: entry.path,
                                         options: .referenceGolden)
                checks.append(check)
                progress("  [\(i + 1)/\(manifest.files.count)] \(entry.path) \(name): \(check.passed ? "ok" : "DIFFERS") (\(check.mode))")
            }
        }
        print(pad("trace", 34) + pad("decoder", 10) + pad("mode", 9) + pad("objects", 8) + pad("tie flips", 10) + "status")
        for c in checks {
            print(pad(c.file, 34) + pad(c.decoder, 10) + pad(c.mode, 9) + pad("\(c.verdict.items.count)", 8)
                  + pad("\(c.verdict.tieFlips.count)", 10) + (c.passed ? "ok" : "FAILED"))
        }
        for c in checks where !c.passed {
            print("\nFAIL \(c.file) (\(c.mode))")
            print(c.verdict.render(verbose: verbose))
        }
        let failures = checks.filter { !$0.passed }.count + (problems.isEmpty ? 0 : 1)
        return (checks.count + 1, failures)
    }
}

/// Text rendering of verification results: a table, then every failure in detail.
enum VerifyReport {
    static func render(_ results: [TransformersCheck], verbose: Bool, maxReported: Int) -> String {
        var lines: [String] = []
        lines.append(pad("model", 12) + pad("case", 28) + pad("run", 9) + pad("tensors", 9) + pad("worst/bound", 13)
                     + pad("max NMSE", 11) + pad("tokens", 8) + "status")
        for r in results {
            let runs = Array(Set(r.tensors.map { String($0.name.split(separator: "/")[0]) })).sorted()
            for run in runs {
                let ts = r.tensors.filter { $0.name.hasPrefix(run + "/") }
                let ex = r.exact.filter { $0.name.hasPrefix(run + "/") }
                let ok = ts.allSatisfy(\.passed) && ex.allSatisfy(\.passed)
                lines.append(pad(r.model, 12) + pad(r.caseName, 28) + pad(run, 9) + pad("\(ts.count)", 9)
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
                    line += String(format: "NMSE %.2e (limit %.0e), worst %.3f of bound, %d element(s) outside",
                                   t.nmse, t.nmseLimit, t.worstRatio, t.mismatchCount)
                }
                lines.append(line)
                if !t.passed { failures.append(line) }
                for m in t.mismatches.prefix(maxReported) {
                    let detail = String(format: "      [%d, %d] expected %.9g actual %.9g difference %.3g bound %.3g",
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
