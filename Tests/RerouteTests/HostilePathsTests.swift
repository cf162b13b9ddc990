import Foundation
import Testing

/// Hostile paths (not damaged files, but the wrong kind of file, or outputs aimed at inputs):
/// refused at once with exit 2 and the path named; nothing an input holds is ever replaced.
@Suite struct HostilePathsTests {
    func run(_ args: [String], deadline: TimeInterval = 60) throws -> Subprocess.Outcome { try Subprocess.run(args, deadline: deadline) }

    @Test func specialFilesAreRefusedAtOnce() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        // A model folder whose weights, or whose config, are a FIFO (open() would block forever).
        for name in ["model.safetensors", "config.json"] {
            let m = dir.url.appendingPathComponent("m-\(name)")
            try FileManager.default.copyItem(at: Repo.model("tiny-llama"), to: m)
            try FileManager.default.removeItem(at: m.appendingPathComponent(name))
            #expect(mkfifo(m.appendingPathComponent(name).path, 0o644) == 0)
            let start = Date()
            let r = try run(["inspect", m.path], deadline: 20)
            #expect(!r.timedOut && r.status == 2 && r.err.contains("is a FIFO, not a regular file") && r.err.contains(name), "\(r.err)")
            #expect(Date().timeIntervalSince(start) < 10)
        }
        // A case, a trace and a policy file that are FIFOs or devices.
        #expect(mkfifo(dir.path("case.h5"), 0o644) == 0)
        let c = try run(["run", "--model", "golden/models/tiny-llama", "--case", dir.path("case.h5"), "--policy", "dense", "--out", dir.path("o.h5")],
                        deadline: 20)
        #expect(!c.timedOut && c.status == 2 && c.err.contains("case.h5"), "\(c.err)")
        let t = try run(["show", "/dev/zero"], deadline: 20)
        #expect(!t.timedOut && t.status == 2 && t.err.contains("/dev/zero") && t.err.contains("not a regular file"), "\(t.err)")
        let p = try run(["budget", "--policy-file", "/dev/zero"], deadline: 20)
        #expect(!p.timedOut && p.status == 2 && p.err.contains("is a character device"), "\(p.err)")
    }

    @Test func outputsNeverTouchInputs() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let models = dir.url.appendingPathComponent("tiny-llama")
        try FileManager.default.copyItem(at: Repo.model("tiny-llama"), to: models)
        let casePath = dir.path("case.h5")
        try FileManager.default.copyItem(atPath: Repo.root.appendingPathComponent("golden/traces/tiny-llama/dense.h5").path, toPath: casePath)
        let caseBytes = try Data(contentsOf: URL(fileURLWithPath: casePath))
        let weights = models.appendingPathComponent("model.safetensors")
        let weightBytes = try Data(contentsOf: weights)
        let base = ["run", "--model", models.path, "--case", casePath, "--policy", "dense"]
        let overCase = try run(base + ["--out", casePath, "--overwrite"])
        #expect(overCase.status == 2 && overCase.err.contains("is an input of this command"), "\(overCase.err)")
        let intoModel = try run(base + ["--out", weights.path, "--overwrite"])
        #expect(intoModel.status == 2 && intoModel.err.contains("model folder"), "\(intoModel.err)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: casePath)) == caseBytes && Data(contentsOf: weights) == weightBytes)
        // routes --svg: never the trace itself; an existing file only with --overwrite.
        #expect(try run(["routes", casePath, "--svg", casePath]).status == 2)
        #expect(try Data(contentsOf: URL(fileURLWithPath: casePath)) == caseBytes)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: dir.path("e.svg")))
        #expect(try run(["routes", casePath, "--svg", dir.path("e.svg")]).status == 2)
        #expect(try String(contentsOfFile: dir.path("e.svg"), encoding: .utf8) == "keep")
        #expect(try run(["routes", casePath, "--svg", dir.path("e.svg"), "--overwrite"]).status == 0)
        // A missing output folder is named in the suite's voice (no Foundation error text).
        let missing = try run(base + ["--out", dir.path("no/such/out.h5")])
        #expect(missing.status == 2 && missing.err.hasPrefix("reroute: error:") && missing.err.contains("does not exist")
                && !missing.err.contains("NSCocoaErrorDomain"), "\(missing.err)")
    }

    @Test func temporariesStayShortAndLeftoversAreRemoved() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        // A temporary file of a writer that was killed (no such process) is removed by the next write.
        let stale = dir.path(".reroute-999999-1.tmp")
        try Data("partial".utf8).write(to: URL(fileURLWithPath: stale))
        let longName = String(repeating: "n", count: 250) + ".h5"
        let r = try run(["run", "--model", "golden/models/tiny-llama", "--case", "golden/traces/tiny-llama/dense.h5", "--policy", "dense",
                         "--out", dir.path(longName)])
        #expect(r.status == 0, "\(r.err)")
        #expect(FileManager.default.fileExists(atPath: dir.path(longName)) && !FileManager.default.fileExists(atPath: stale))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.url.path).allSatisfy { !$0.hasSuffix(".tmp") })
    }

    @Test func unknownOptionsAreNamed() throws {
        for (args, option) in [(["run", "--bogus"], "--bogus"), (["diff", "a", "b", "--nonsense"], "--nonsense"),
                               (["policy", "show", "dense", "--colour"], "--colour")] {
            let r = try run(args)
            #expect(r.status == 2 && r.err.hasPrefix("reroute: error: unknown option '\(option)'"), "\(args): \(r.err)")
        }
    }
}
