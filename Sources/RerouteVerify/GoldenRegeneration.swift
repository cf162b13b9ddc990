import CRerouteSys
import Foundation
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace

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

    /// Which golden set: the tiny models shipped in `golden/models` (full traces), or the
    /// built models of `GoldenTraces.trained` (compact traces, models from `.build-models`).
    public enum GoldenSet: String, Sendable, CaseIterable { case shipped, trained }

    public static func run(modelsRoot: URL, tracesRoot: URL, set: GoldenSet = .shipped, force: Bool, commit: String,
                           progress: (String) -> Void = { _ in }) throws -> Outcome {
        let fm = FileManager.default
        let parent = tracesRoot.deletingLastPathComponent()
        // Leftovers of an interrupted regeneration (killed before it cleaned up) are removed;
        // the shipped folder itself is never touched until the swap.
        for name in (try? fm.contentsOfDirectory(atPath: parent.path)) ?? []
        where name.hasPrefix(".\(tracesRoot.lastPathComponent).staging-") || name.hasPrefix(".\(tracesRoot.lastPathComponent).old-") {
            try? fm.removeItem(at: parent.appendingPathComponent(name))
        }
        let staging = parent.appendingPathComponent(".\(tracesRoot.lastPathComponent).staging-\(getpid())")
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        var keepStaging = false
        defer { if !keepStaging { try? fm.removeItem(at: staging) } }

        var entries: [GoldenManifest.Entry] = []
        for model in try plan(set, modelsRoot: modelsRoot) {
            let weights = try ModelWeights.load(directory: model.directory)
            let decoder = ReferenceDecoder(weights: weights)
            let builtCase = try model.built?.goldenCase(in: model.directory)
            try fm.createDirectory(at: staging.appendingPathComponent(model.name), withIntermediateDirectories: true)
            for policy in model.built?.policies ?? GoldenTraces.policies(for: weights.config) {
                let rel = GoldenTraces.relativePath(model: model.name, policy: policy.name)
                progress("  \(rel)")
                let c = builtCase ?? GoldenTraces.goldenCase(for: policy, weights: weights, model: model.name)
                var trace = try TraceRecorder.record(decoder: decoder, model: model.name, case: c, policy: policy,
                                                     seed: GoldenTraces.seed, commit: "see MANIFEST.json")
                if let built = model.built { trace = trace.keepingHiddenStates(ofRows: built.storedRows(sequenceLength: trace.sequenceLength)) }
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
                    first = compareTraces(expected: a, actual: b, rules: .reference).firstDivergence ?? "bytes only"
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
        try swapIn(staging, at: tracesRoot)
        keepStaging = true  // it now holds the old set, removed just below
        try? fm.removeItem(at: staging)
        return Outcome(changes: changes, written: true)
    }

    /// The models of a set, in order, each with its build description for built models. A
    /// built model that is missing is an error naming the command that builds it.
    static func plan(_ set: GoldenSet, modelsRoot: URL) throws -> [(name: String, directory: URL, built: BuiltModel?)] {
        switch set {
        case .shipped:
            return try GoldenStore.models(in: modelsRoot).map { ($0.name, $0.directory, nil) }
        case .trained:
            return try GoldenTraces.trained.map { m in
                let dir = modelsRoot.appendingPathComponent(m.name)
                guard FileManager.default.fileExists(atPath: dir.appendingPathComponent("config.json").path) else {
                    throw VerifyError.refused("\(dir.path): model '\(m.name)' is not built; `\(m.builder)` builds it")
                }
                return (m.name, dir, m)
            }
        }
    }

    /// Puts the complete folder `fresh` at `target` so that `target` always names a complete
    /// set, even if the process is killed at any moment: one atomic `renameat2(RENAME_EXCHANGE)`
    /// (afterwards `fresh` names the old set); a plain rename when `target` does not exist yet.
    /// File systems without the exchange fall back to two renames (a kill between them leaves
    /// the old set at `.<name>.old-PID`, restored by hand).
    public static func swapIn(_ fresh: URL, at target: URL) throws {
        let fm = FileManager.default
        guard fm.fileExists(atPath: target.path) else { return try fm.moveItem(at: fresh, to: target) }
        if reroute_exchange_paths(fresh.path, target.path) == 0 { return }
        guard errno == EINVAL || errno == ENOSYS else {
            throw VerifyError.refused("cannot swap \(fresh.path) into \(target.path): \(String(cString: strerror(errno)))")
        }
        let retired = target.deletingLastPathComponent().appendingPathComponent(".\(target.lastPathComponent).old-\(getpid())")
        try fm.moveItem(at: target, to: retired)
        try fm.moveItem(at: fresh, to: target)
        try fm.moveItem(at: retired, to: fresh)
    }
}
