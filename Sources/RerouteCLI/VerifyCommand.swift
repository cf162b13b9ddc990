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

    @Option(name: .long, help: "Decoders to check against the golden traces: reference, fast, or both (comma-separated).")
    var decoders: String = "reference,fast"

    var decoderNames: [String] { decoders.split(separator: ",").map(String.init) }

    func validate() throws {
        if let bad = decoderNames.first(where: { !["reference", "fast"].contains($0) }) {
            throw ValidationError("unknown decoder '\(bad)'; available: reference, fast")
        }
        if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1, got \(jobs)") }
    }

    @Flag(name: .shortAndLong, help: "Print every compared tensor, not only failures.")
    var verbose = false

    @Option(name: .long, help: "Offending elements to print per failing tensor.")
    var maxReported = 8

    @Option(name: .shortAndLong, help: "Checks run in parallel (default: the number of cores).")
    var jobs: Int?

    func run() throws {
        let root = models.map { URL(fileURLWithPath: $0) } ?? GoldenStore.defaultModelsRoot()
        let found = try GoldenStore.models(in: root)
        if found.isEmpty { throw InputError(.fileNotFound, file: root.path, "no model folders (with config.json) here") }
        let start = Date()
        // Read every input first (serially), then check in parallel.
        var caseJobs: [(name: String, decoder: ReferenceDecoder, model: String, reference: HFReferenceCase)] = []
        for model in found {
            progress("loading \(model.name) from \(model.directory.path)")
            let decoder = ReferenceDecoder(weights: try ModelWeights.load(directory: model.directory))
            for path in model.casePaths {
                caseJobs.append(("\(model.name)/\(URL(fileURLWithPath: path).lastPathComponent)", decoder, model.name,
                                 try HFReferenceCase.load(path: path)))
            }
        }
        progress("checking \(caseJobs.count) transformers case(s) on \(workerCount) job(s)")
        let results = try parallelMap(caseJobs.map { job in
            (job.name, { try TransformersCheck.run(decoder: job.decoder, model: job.model, reference: job.reference) })
        }, status: { $0.passed ? "ok" : "DIFFERS" })
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
        var fastByModel: [String: FastDecoder] = [:]
        var jobs: [(String, () throws -> TraceCheck)] = []
        // One thread per fast decoder when checks run side by side (no oversubscription).
        let fastOptions = FastDecoderOptions(threads: workerCount > 1 ? 1 : nil)
        for entry in manifest.files {
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
            // One fast decoder per model, shared by its jobs (it packs a copy of the weights).
            if decoderNames.contains("fast"), fastByModel[entry.model] == nil {
                fastByModel[entry.model] = FastDecoder(weights: weights, options: fastOptions)
            }
            let fast = fastByModel[entry.model]
            for name in decoderNames {
                jobs.append(("\(entry.path) \(name)", {
                    name == "fast"
                        ? try TraceCheck.run(decoder: fast!, golden: golden, file: entry.path, options: .fastVsReference(weights.config))
                        : try TraceCheck.run(decoder: ReferenceDecoder(weights: weights), golden: golden, file: entry.path,
                                             options: .referenceGolden)
                }))
            }
        }
        progress("checking \(jobs.count) golden trace run(s) on \(workerCount) job(s)")
        let checks = try parallelMap(jobs, status: { "\($0.passed ? "ok" : "DIFFERS") (\($0.mode))" })
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

extension VerifyCommand {
    var workerCount: Int { jobs ?? ProcessInfo.processInfo.activeProcessorCount }

    /// Runs the named jobs on `workerCount` workers; results come back in the jobs' order (the
    /// output never depends on timing). Progress lines are printed as jobs finish. The first
    /// error (in job order) is rethrown after all jobs ended.
    func parallelMap<T: Sendable>(_ jobs: [(String, () throws -> T)], status: @escaping (T) -> String) throws -> [T] {
        let box = ParallelResults<T>(jobs.count)
        nonisolated(unsafe) let work = jobs
        nonisolated(unsafe) let status = status
        DispatchQueue.concurrentPerform(iterations: min(workerCount, max(1, jobs.count))) { _ in
            while true {
                box.lock.lock()
                let i = box.next
                box.next += 1
                box.lock.unlock()
                guard i < work.count else { return }
                let t0 = Date()
                let r = Result { try work[i].1() }
                box.lock.lock()
                box.results[i] = r
                box.done += 1
                let line = String(format: "  [%d/%d] %@ %@ (%.1f s)", box.done, work.count, work[i].0,
                                  (try? r.get()).map(status) ?? "ERROR", Date().timeIntervalSince(t0))
                progress(line)
                box.lock.unlock()
            }
        }
        return try box.results.map { try $0!.get() }
    }
}

/// Results of `parallelMap`, filled under a lock by the workers.
final class ParallelResults<T>: @unchecked Sendable {
    var results: [Result<T, Error>?]
    /// Jobs finished, and the next job to take.
    var done = 0, next = 0
    let lock = NSLock()
    init(_ n: Int) { results = Array(repeating: nil, count: n) }
}

/// Text rendering of verification results: a table, then every failure in detail.
enum VerifyReport {
    static func render(_ results: [TransformersCheck], verbose: Bool, maxReported: Int) -> String {
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
