import ArgumentParser
import Foundation
import RerouteVerify

struct GoldenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "golden",
        abstract: "Regenerate or check the golden traces.",
        subcommands: [Regenerate.self, Check.self])

    struct Regenerate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rebuild golden/traces with the reference decoder; refuses to overwrite without --force.",
            discussion: HelpText.reflowed("""
                Writes every trace of SPEC.md §9.4 to a staging folder, compares it with the shipped
                set (SHA-256, and for changed files the first diverging dataset), prints what changed,
                and only with --force swaps the new folder in (the old set stays whole until then).
                Exit 0 when written or unchanged, 2 when changes were found but not written.
                Commit a regeneration with the reason in the message.
                --set trained regenerates the compact goldens of the trained models instead
                (golden/trained; their checkpoints are built into .build-models by
                python3 tools/make_smollm2.py, never committed).
                """))
        @Option(help: "Which goldens: shipped (the tiny models of golden/models) or trained (golden/trained).")
        var set: GoldenRegeneration.GoldenSet = .shipped
        @Option(help: "Model folders (default: golden/models, or .build-models for --set trained).") var models: String?
        @Option(help: "Golden traces folder (default: golden/traces, or golden/trained for --set trained).") var traces: String?
        @Flag(help: "Replace the shipped golden traces.") var force = false

        func run() throws {
            let models = self.models ?? (set == .shipped ? "golden/models" : ".build-models")
            let traces = self.traces ?? (set == .shipped ? "golden/traces" : "golden/trained")
            progress("regenerating golden traces of \(models) into \(traces) (reference decoder)")
            let outcome = try GoldenRegeneration.run(modelsRoot: URL(fileURLWithPath: models), tracesRoot: URL(fileURLWithPath: traces),
                                                     set: set, force: force, commit: gitCommit(), progress: progress)
            for c in outcome.changed {
                print("\(pad(c.status, 9)) \(c.path)" + (c.firstDivergence.map { "  (first divergence: \($0))" } ?? ""))
            }
            let unchanged = outcome.changes.count - outcome.changed.count
            if outcome.changed.isEmpty && !outcome.written {
                print("golden traces unchanged (\(unchanged) files)")
            } else if outcome.written {
                print("wrote \(traces): \(outcome.changed.count) changed, \(unchanged) unchanged")
            } else {
                FileHandle.standardError.write(Data("reroute: error: \(outcome.changed.count) golden file(s) would change; not written. Rerun with --force to replace them.\n".utf8))
                throw ExitCode(2)
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check a golden folder (golden/traces, golden/trained) against its MANIFEST.json (SHA-256 of every file).")
        @Option(help: "Golden traces folder.") var traces = "golden/traces"

        func run() throws {
            let dir = URL(fileURLWithPath: traces)
            let manifest = try GoldenManifest.load(from: dir)
            let problems = manifest.problems(in: dir)
            for p in problems { print("DIFF \(p)") }
            print("\(manifest.files.count) file(s), \(problems.count) problem(s); generator commit \(manifest.generatorCommit), seed \(manifest.seed)")
            if !problems.isEmpty { throw ExitCode(1) }
        }
    }
}
