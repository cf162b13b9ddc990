import Foundation
import RerouteFast
import RerouteModel
import RerouteReference
import RerouteTrace

/// The suite's two decoders, as named in traces (`/@decoder`) and on the command line.
public enum DecoderKind: String, Sendable, Codable, CaseIterable {
    case reference, fast
}

/// What `reroute verify` checks (SPEC.md §9.4).
public struct VerifyOptions: Sendable {
    /// Folder with one subfolder per model (config.json, safetensors, cases/*.h5).
    public var modelsRoot: URL
    /// Golden traces folder with MANIFEST.json; nil: skip the golden traces.
    public var traces: URL?
    /// Decoders re-run against every golden trace.
    public var decoders: [DecoderKind]
    /// Checks run side by side (≥ 1).
    public var jobs: Int
    /// Run only this shard's jobs (nil: all).
    public var shard: Shard?

    public init(modelsRoot: URL, traces: URL?, decoders: [DecoderKind] = DecoderKind.allCases,
                jobs: Int = ProcessInfo.processInfo.activeProcessorCount, shard: Shard? = nil) {
        self.modelsRoot = modelsRoot
        self.traces = traces
        self.decoders = decoders
        self.jobs = max(1, jobs)
        self.shard = shard
    }
}

/// The results of one `reroute verify`: every transformers case and golden trace check, in a
/// fixed order (independent of the job count).
public struct VerifyResult: Sendable {
    public var shard: Shard?
    public var transformers: [TransformersCheck]
    /// The global job index of each case and trace check (cases first, then trace runs).
    public var caseJobs: [Int]
    public var traceChecks: [TraceCheck]
    public var traceJobs: [Int]
    /// The golden manifest, when traces were checked: (folder, files, generator commit, seed).
    public var manifest: (folder: String, files: Int, generator: String, seed: Int)?
    public var manifestProblems: [String]
    public var seconds: Double

    /// Checks made: each case, each trace run, and the manifest.
    public var checkCount: Int { transformers.count + traceChecks.count + (manifest == nil ? 0 : 1) }
    public var failureCount: Int {
        transformers.filter { !$0.passed }.count + traceChecks.filter { !$0.passed }.count + (manifestProblems.isEmpty ? 0 : 1)
    }
    public var passed: Bool { failureCount == 0 }
}

/// The verify job (SPEC.md §9.4): plan (read every input, serially), run (the checks on
/// `jobs` workers), report. Progress lines go to `progress` as checks finish.
public enum VerifyJob {
    public static func run(_ o: VerifyOptions, progress: @escaping @Sendable (String) -> Void = { _ in }) throws -> VerifyResult {
        let start = Date()
        let found = try GoldenStore.models(in: o.modelsRoot)
        if found.isEmpty { throw InputError(.fileNotFound, file: o.modelsRoot.path, "no model folders (with config.json) here") }
        var caseJobs: [(String, () throws -> TransformersCheck)] = []
        var weightsByModel: [String: ModelWeights] = [:]
        for model in found {
            progress("loading \(model.name) from \(model.directory.path)")
            let weights = try ModelWeights.load(directory: model.directory)
            weightsByModel[model.name] = weights
            let decoder = ReferenceDecoder(weights: weights)
            for path in model.casePaths {
                let reference = try HFReferenceCase.load(path: path)
                caseJobs.append(("\(model.name)/\(URL(fileURLWithPath: path).lastPathComponent)", {
                    try TransformersCheck.run(decoder: decoder, model: model.name, reference: reference)
                }))
            }
        }
        let owned = { (k: Int) in o.shard?.owns(job: k) ?? true }
        let caseIndices = caseJobs.indices.filter(owned)
        progress("checking \(caseIndices.count) transformers case(s) on \(o.jobs) job(s)")
        let cases = try ParallelJobs.map(caseIndices.map { caseJobs[$0] }, workers: o.jobs, progress: progress) { $0.passed ? "ok" : "DIFFERS" }
        guard let dir = o.traces else {
            return VerifyResult(shard: o.shard, transformers: cases, caseJobs: caseIndices, traceChecks: [], traceJobs: [], manifest: nil,
                                manifestProblems: [], seconds: Date().timeIntervalSince(start))
        }
        let manifest = try GoldenManifest.load(from: dir)
        var fastByModel: [String: FastDecoder] = [:]
        var jobs: [(String, () throws -> TraceCheck)] = []
        // One thread per fast decoder when checks run side by side (no oversubscription).
        let fastOptions = FastDecoderOptions(threads: o.jobs > 1 ? 1 : nil)
        for entry in manifest.files {
            let path = dir.appendingPathComponent(entry.path).path
            let golden = try Trace.read(from: path)
            if weightsByModel[entry.model] == nil {
                let mdir = o.modelsRoot.appendingPathComponent(entry.model)
                guard FileManager.default.fileExists(atPath: mdir.appendingPathComponent("config.json").path) else {
                    throw VerifyError.missingModel(path, entry.model)
                }
                weightsByModel[entry.model] = try ModelWeights.load(directory: mdir)
            }
            let weights = weightsByModel[entry.model]!
            // One fast decoder per model, shared by its jobs (it packs a copy of the weights).
            if o.decoders.contains(.fast), fastByModel[entry.model] == nil {
                fastByModel[entry.model] = FastDecoder(weights: weights, options: fastOptions)
            }
            let fast = fastByModel[entry.model]
            let maxPosition = golden.input.positions.maxPosition
            for kind in o.decoders {
                jobs.append(("\(entry.path) \(kind.rawValue)", {
                    switch kind {
                    case .fast:
                        try TraceCheck.run(decoder: fast!, golden: golden, file: entry.path,
                                           rules: .fastVsReference(weights.config, maxPosition: maxPosition))
                    case .reference:
                        try TraceCheck.run(decoder: ReferenceDecoder(weights: weights), golden: golden, file: entry.path, rules: .reference)
                    }
                }))
            }
        }
        let traceIndices = jobs.indices.filter { owned(caseJobs.count + $0) }
        progress("checking \(traceIndices.count) golden trace run(s) on \(o.jobs) job(s)"
                 + (o.decoders.contains(.fast) ? "; fast decoder on the \(fastOptions.isa.rawValue) vector path (widest here \(VectorISA.widest.rawValue))" : ""))
        let checks = try ParallelJobs.map(traceIndices.map { jobs[$0] }, workers: o.jobs, progress: progress) {
            "\($0.passed ? "ok" : "DIFFERS") (\($0.mode))"
        }
        // The manifest is one check, of shard 0.
        let withManifest = o.shard.map { $0.index == 0 } ?? true
        return VerifyResult(shard: o.shard, transformers: cases, caseJobs: caseIndices, traceChecks: checks,
                            traceJobs: traceIndices.map { caseJobs.count + $0 },
                            manifest: withManifest ? (dir.path, manifest.files.count, manifest.generatorCommit, manifest.seed) : nil,
                            manifestProblems: withManifest ? manifest.problems(in: dir) : [], seconds: Date().timeIntervalSince(start))
    }
}

/// Runs named jobs on worker threads; results come back in the jobs' order, so output never
/// depends on timing. The first error (in job order) is rethrown after all jobs ended.
public enum ParallelJobs {
    public static func map<T: Sendable>(_ jobs: [(String, () throws -> T)], workers: Int, progress: @escaping @Sendable (String) -> Void,
                                        status: @escaping (T) -> String) throws -> [T] {
        let box = LockedResults<T>(jobs.count)
        // The job closures and the status function are only read by the workers.
        let sharedJobs = UncheckedShared(jobs), sharedStatus = UncheckedShared(status)
        DispatchQueue.concurrentPerform(iterations: min(max(1, workers), max(1, jobs.count))) { _ in
            let work = sharedJobs.value, status = sharedStatus.value
            while true {
                guard let i = box.claim() else { return }
                let t0 = Date()
                let r = Result { try work[i].1() }
                let done = box.store(r, at: i)
                progress(String(format: "  [%d/%d] %@ %@ (%.1f s)", done, work.count, work[i].0,
                                (try? r.get()).map(status) ?? "ERROR", Date().timeIntervalSince(t0)))
            }
        }
        return try box.results.map { try $0!.get() }
    }
}

/// Results filled by workers under one lock.
final class LockedResults<T>: @unchecked Sendable {
    private(set) var results: [Result<T, Error>?]
    private var done = 0, next = 0
    private let lock = NSLock()
    init(_ n: Int) { results = Array(repeating: nil, count: n) }

    /// The next job index, or nil when all are taken.
    func claim() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard next < results.count else { return nil }
        next += 1
        return next - 1
    }

    /// Stores a result; returns the number of jobs done.
    func store(_ r: Result<T, Error>, at i: Int) -> Int {
        lock.lock()
        defer { lock.unlock() }
        results[i] = r
        done += 1
        return done
    }
}

extension VerifyResult {
    /// The `reroute.verify` v2 JSON report (`VerifyReportData`).
    public func json() throws -> String { try VerifyReportData(self).json() }
}
