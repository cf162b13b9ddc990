import Foundation
import Testing

/// The `reroute` binary end to end: output and the fixed exit codes (0 / 1 / 2).
@Suite struct CLITests {
    struct Result { var status: Int32; var out: String; var err: String }

    static let binary: URL = {
        // The test bundle and the executable live in the same build products folder.
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while dir.path != "/" {
            dir.deleteLastPathComponent()
            let candidate = dir.appendingPathComponent("reroute")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        return Repo.root.appendingPathComponent(".build/debug/reroute")
    }()

    func run(_ args: [String]) throws -> Result {
        let p = Process()
        p.executableURL = Self.binary
        p.arguments = args
        p.currentDirectoryURL = Repo.root
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self))
    }

    func copyModels() throws -> TempDir {
        let dir = try TempDir()
        for m in ["tiny-llama"] {
            try FileManager.default.copyItem(at: Repo.model(m), to: dir.url.appendingPathComponent(m))
        }
        return dir
    }

    @Test func verifyPassesOnShippedGoldens() throws {
        let r = try run(["verify"])
        #expect(r.status == 0, "\(r.out)\(r.err)")
        #expect(r.out.contains("verify: 41 check(s), 41 passed, 0 failed"))
        #expect(r.out.contains("tiny-qwen2/reroute-nuwa-64.h5"))
        #expect(r.err.contains("[2/2]"))  // progress goes to stderr
    }

    @Test func verifyReportsDifferencesWithExitOne() throws {
        let dir = try copyModels()
        defer { dir.cleanup() }
        let config = dir.url.appendingPathComponent("tiny-llama/config.json")
        let text = try String(contentsOf: config, encoding: .utf8)
        try text.replacingOccurrences(of: "\"rms_norm_eps\": 1e-05", with: "\"rms_norm_eps\": 1e-04")
            .write(to: config, atomically: true, encoding: .utf8)
        let r = try run(["verify", "--models", dir.url.path, "--traces", "none"])
        #expect(r.status == 1, "\(r.out)\(r.err)")
        #expect(r.out.contains("Failures ("))
        #expect(r.out.contains("FAIL tiny-llama/features-12x12-contiguous float64/hidden[1]"))
    }

    @Test func verifyNamesTheBrokenFileWithExitTwo() throws {
        let dir = try copyModels()
        defer { dir.cleanup() }
        let weights = dir.url.appendingPathComponent("tiny-llama/model.safetensors")
        let bytes = try Data(contentsOf: weights)
        try bytes.prefix(5000).write(to: weights)
        let r = try run(["verify", "--models", dir.url.path, "--traces", "none"])
        #expect(r.status == 2)
        #expect(r.err.contains("model.safetensors"), "\(r.err)")
        #expect(r.err.contains("reroute: error:"))
    }

    @Test func inspectPrintsTheModel() throws {
        let r = try run(["inspect", "golden/models/tiny-qwen2", "--tensors"])
        #expect(r.status == 0, "\(r.err)")
        #expect(r.out.contains("qwen2") && r.out.contains("4 / 2") && r.out.contains("model.layers.7.self_attn.k_proj.bias"))
        let missing = try run(["inspect", "/nonexistent"])
        #expect(missing.status == 2 && missing.err.contains("/nonexistent/config.json"))
    }

    @Test func budgetForLLaVAWithoutWeights() throws {
        let r = try run(["budget", "--config", "golden/configs/llava-1.5-7b.json", "--policy", "pdrop"])
        #expect(r.status == 0, "\(r.err)")
        // PDrop paper: 270 average tokens, 1.78 TFLOPs (image-only MACs).
        #expect(r.out.contains("pdrop") && r.out.contains("270.00") && r.out.contains("1.7774"))
        let all = try run(["budget", "--config", "golden/configs/qwen2.5-vl-7b.json"])
        #expect(all.status == 0 && all.out.contains("reroute-fastv-192") && all.out.contains("H_kv=4"))
        #expect(try run(["budget", "--policy", "nope"]).status == 2)
        #expect(try run(["budget", "--grid", "24"]).status == 2)
    }

    @Test func usageErrorsExitTwoAndHelpExitsZero() throws {
        #expect(try run(["verify", "--no-such-flag"]).status == 2)
        #expect(try run(["frobnicate"]).status == 2)
        let help = try run(["--help"])
        #expect(help.status == 0 && help.out.contains("verify"))
        #expect(try run(["verify", "--help"]).out.contains("tolerances"))
    }
}
