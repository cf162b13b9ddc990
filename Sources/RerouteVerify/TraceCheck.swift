import Foundation
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace

/// A golden trace re-run and compared (SPEC.md §9.3): free mode first; when the only route
/// differences are tie flips within ε, the run is repeated in lockstep (routes forced from
/// the golden) so a legitimate flip does not turn every later layer red.
public struct TraceCheck: Sendable {
    public var file: String
    public var model: String
    public var policy: String
    public var decoder: String
    public var free: TraceDiffReport
    public var lockstep: TraceDiffReport?

    /// "free", or "lockstep" when the lockstep replay decided the verdict.
    public var mode: String { lockstep == nil ? "free" : "lockstep" }
    public var verdict: TraceDiffReport { lockstep ?? free }
    public var passed: Bool { verdict.passed }

    /// Re-runs `golden`'s policy on its inputs with `decoder` and compares.
    public static func run<D: TraceableDecoder>(decoder: D, golden: Trace, file: String, options: DiffOptions) throws -> TraceCheck {
        let actual = try TraceRecorder.record(decoder: decoder, model: golden.provenance.model, case: golden.input, policy: golden.policy,
                                              seed: golden.provenance.seed, file: file)
        let free = diffTraces(expected: golden, actual: actual, options: options, expectedName: file, actualName: "\(decoder.name) (free)")
        var lockstep: TraceDiffReport?
        if !free.passed, free.lockstepJustified {
            let forced = Dictionary(uniqueKeysWithValues: golden.decisions.map { ($0.layer, $0.kept) })
            let replay = try TraceRecorder.record(decoder: decoder, model: golden.provenance.model, case: golden.input,
                                                  policy: golden.policy, seed: golden.provenance.seed, forcedKept: forced, file: file)
            var report = diffTraces(expected: golden, actual: replay, options: options, expectedName: file,
                                    actualName: "\(decoder.name) (lockstep)")
            // The flips themselves are part of the verdict: they were accepted within ε.
            report.items.insert(contentsOf: free.tieFlips, at: 0)
            lockstep = report
        }
        return TraceCheck(file: file, model: golden.provenance.model, policy: golden.policy.name, decoder: decoder.name,
                          free: free, lockstep: lockstep)
    }
}

/// Regenerating the golden traces (SPEC.md §9.4): everything is written to a staging folder
/// first; the result is compared with what is shipped; the folders are swapped only when
/// forced.
public enum GoldenRegeneration {
    public struct Change: Sendable {
        public var path: String
        /// "added", "removed", "changed", "unchanged".
        public var status: String
        /// For changed traces: where the new one first departs from the old.
        public var firstDivergence: String?
    }

    public struct Outcome: Sendable {
        public var changes: [Change]
        public var written: Bool
        public var changed: [Change] { changes.filter { $0.status != "unchanged" } }
    }

    public static func run(modelsRoot: URL, tracesRoot: URL, force: Bool, commit: String,
                           progress: (String) -> Void = { _ in }) throws -> Outcome {
        let fm = FileManager.default
        let staging = tracesRoot.deletingLastPathComponent()
            .appendingPathComponent(".\(tracesRoot.lastPathComponent).staging-\(getpid())")
        try? fm.removeItem(at: staging)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        var keepStaging = false
        defer { if !keepStaging { try? fm.removeItem(at: staging) } }

        var entries: [GoldenManifest.Entry] = []
        for model in try GoldenStore.models(in: modelsRoot) {
            let weights = try ModelWeights.load(directory: model.directory)
            let decoder = ReferenceDecoder(weights: weights)
            let c = GoldenTraces.traceCase(for: weights, model: model.name)
            try fm.createDirectory(at: staging.appendingPathComponent(model.name), withIntermediateDirectories: true)
            for policy in GoldenTraces.policies(for: weights.config) {
                let rel = GoldenTraces.relativePath(model: model.name, policy: policy.name)
                progress("  \(rel)")
                let trace = try TraceRecorder.record(decoder: decoder, model: model.name, case: c, policy: policy,
                                                     seed: GoldenTraces.seed, commit: "see MANIFEST.json")
                let path = staging.appendingPathComponent(rel).path
                try trace.write(to: path)
                entries.append(.init(path: rel, sha256: try sha256Hex(ofFile: path), model: model.name, policy: policy.name,
                                     case: c.name))
            }
        }
        let manifest = GoldenManifest(generatorCommit: commit, seed: GoldenTraces.seed, traceSchemaVersion: Trace.schemaVersion,
                                      files: entries)
        try manifest.write(to: staging)

        let old = try? GoldenManifest.load(from: tracesRoot)
        var changes: [Change] = []
        let oldByPath = Dictionary(uniqueKeysWithValues: (old?.files ?? []).map { ($0.path, $0) })
        for e in entries {
            guard let o = oldByPath[e.path] else { changes.append(Change(path: e.path, status: "added")); continue }
            if o.sha256 == e.sha256 {
                changes.append(Change(path: e.path, status: "unchanged"))
            } else {
                var first: String?
                if let a = try? Trace.read(from: tracesRoot.appendingPathComponent(e.path).path),
                   let b = try? Trace.read(from: staging.appendingPathComponent(e.path).path) {
                    first = diffTraces(expected: a, actual: b, options: .referenceGolden).firstDivergence ?? "bytes only"
                }
                changes.append(Change(path: e.path, status: "changed", firstDivergence: first))
            }
        }
        for o in old?.files ?? [] where !entries.contains(where: { $0.path == o.path }) {
            changes.append(Change(path: o.path, status: "removed"))
        }
        let differs = changes.contains { $0.status != "unchanged" } || old == nil
        if !differs { return Outcome(changes: changes, written: false) }
        if fm.fileExists(atPath: tracesRoot.path), !force {
            return Outcome(changes: changes, written: false)
        }
        // Swap: the old set stays complete until the new one is in place.
        let retired = tracesRoot.deletingLastPathComponent().appendingPathComponent(".\(tracesRoot.lastPathComponent).old-\(getpid())")
        if fm.fileExists(atPath: tracesRoot.path) { try fm.moveItem(at: tracesRoot, to: retired) }
        keepStaging = true
        try fm.moveItem(at: staging, to: tracesRoot)
        try? fm.removeItem(at: retired)
        return Outcome(changes: changes, written: true)
    }
}
