import Foundation
import RerouteFixtures
import RerouteTrace
import RerouteVerify
import Testing

/// SIGKILL at random moments during trace and golden writes (SPEC.md §9.1, §9.4): the target
/// name never holds a partial file, an existing file or golden set is never damaged.
@Suite(.serialized) struct CrashSafetyTests {
    /// Starts the `reroute` binary, kills it with SIGKILL after `delay` seconds (if still running).
    /// Returns whether it was killed before finishing.
    func runAndKill(_ args: [String], after delay: Double) throws -> Bool {
        try Subprocess.run(args, deadline: delay, poll: 0.002, captureOutput: false).timedOut
    }

    /// Delays spread over a run's length; the seed is printed so a failure can be replayed.
    func delays(_ n: Int, upTo t: Double, seed: UInt64) -> [Double] {
        var rng = SplitMix64(seed: seed)
        print("CrashSafetyTests: \(TestSeeds.replay(seed, "CrashSafetyTests"))")
        return (0..<n).map { _ in rng.uniform() * t }
    }

    /// The swap is one atomic exchange: afterwards the target holds the new folder and the
    /// fresh name the old one (never a moment without the target).
    @Test func swapExchangesFoldersAtomically() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let fm = FileManager.default
        let target = dir.url.appendingPathComponent("traces"), fresh = dir.url.appendingPathComponent(".traces.staging")
        for (d, text) in [(target, "old"), (fresh, "new")] {
            try fm.createDirectory(at: d, withIntermediateDirectories: true)
            try text.write(to: d.appendingPathComponent("f"), atomically: true, encoding: .utf8)
        }
        try GoldenRegeneration.swapIn(fresh, at: target)
        #expect(try String(contentsOf: target.appendingPathComponent("f"), encoding: .utf8) == "new")
        #expect(try String(contentsOf: fresh.appendingPathComponent("f"), encoding: .utf8) == "old")
    }

    @Test func killedTraceWritesNeverLeaveAPartialTarget() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let out = dir.path("out.h5")
        let args = ["run", "--model", "golden/models/tiny-llama", "--case", "golden/traces/tiny-llama/dense.h5",
                    "--policy", "reroute-fastv-64", "--out", out, "--overwrite"]
        let start = Date()
        #expect(try !runAndKill(args, after: 30))  // one complete run: the existing file
        let elapsed = Date().timeIntervalSince(start)
        let complete = try Data(contentsOf: URL(fileURLWithPath: out))
        var killedCount = 0
        for d in delays(10, upTo: elapsed, seed: TestSeeds.extra) {
            if try runAndKill(args, after: d) { killedCount += 1 }
            // Same inputs give the same bytes, so the target is always exactly the complete file.
            #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == complete, "killed after \(d) s")
        }
        #expect(killedCount > 0)
        _ = try Trace.read(from: out)
        // A fresh target killed early never appears under its name.
        let fresh = dir.path("fresh.h5")
        if try runAndKill(args.dropLast(3) + ["--out", fresh], after: elapsed / 3) {
            #expect(!FileManager.default.fileExists(atPath: fresh))
        }
    }

    @Test func killedGoldenRegenerationKeepsACompleteSet() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let fm = FileManager.default
        let models = dir.url.appendingPathComponent("models"), traces = dir.url.appendingPathComponent("traces")
        try fm.createDirectory(at: models, withIntermediateDirectories: true)
        try fm.copyItem(at: Repo.model("tiny-llama"), to: models.appendingPathComponent("tiny-llama"))
        let base = ["golden", "regenerate", "--force", "--models", models.path, "--traces", traces.path]
        let start = Date()
        #expect(try !runAndKill(base, after: 120))
        let elapsed = Date().timeIntervalSince(start)
        let old = try GoldenManifest.load(from: traces)
        // Change the model, so every regeneration would replace the whole set.
        let config = models.appendingPathComponent("tiny-llama/config.json")
        try (try String(contentsOf: config, encoding: .utf8)).replacingOccurrences(of: "\"rms_norm_eps\": 1e-05", with: "\"rms_norm_eps\": 1e-04")
            .write(to: config, atomically: true, encoding: .utf8)
        var killedCount = 0
        for d in delays(4, upTo: elapsed * 1.1, seed: TestSeeds.extra ^ 0xA5) {
            if try runAndKill(base, after: d) { killedCount += 1 }
            // Always a complete set, old or new: every file its manifest lists, with its hash.
            let m = try GoldenManifest.load(from: traces)
            #expect(m.problems(in: traces).isEmpty, "killed after \(d) s: \(m.problems(in: traces))")
            #expect(m.files.count == old.files.count)
        }
        #expect(killedCount > 0)
        // A run to the end installs the new set and leaves no staging or retired folder.
        #expect(try !runAndKill(base, after: 120))
        #expect(try GoldenManifest.load(from: traces).files.map(\.sha256) != old.files.map(\.sha256))
        #expect(try fm.contentsOfDirectory(atPath: dir.url.path).sorted() == ["models", "traces"])
    }
}
