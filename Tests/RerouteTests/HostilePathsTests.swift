import Foundation
@testable import RerouteModel
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

    /// Small inputs (a config, a shard index, a policy file, a verify report) are size-checked
    /// before they are read: a sparse file far larger than any real one is refused at once.
    @Test func oversizedSmallInputsAreRefusedBeforeReading() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        func sparse(_ path: String, _ bytes: UInt64) throws {
            #expect(FileManager.default.createFile(atPath: path, contents: Data("{".utf8)))
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try h.truncate(atOffset: bytes)
            try h.close()
        }
        try sparse(dir.path("config.json"), 17 << 20)
        let c = try run(["inspect", dir.path("config.json")])
        #expect(c.status == 2 && c.err.contains("config.json: out of range: \(17 << 20) bytes; a config.json has at most \(16 << 20)"), "\(c.err)")
        let m = dir.url.appendingPathComponent("m")
        try FileManager.default.copyItem(at: Repo.model("tiny-qwen2"), to: m)
        try FileManager.default.removeItem(at: m.appendingPathComponent("model.safetensors.index.json"))
        try sparse(m.appendingPathComponent("model.safetensors.index.json").path, 65 << 20)
        let i = try run(["inspect", m.path])
        #expect(i.status == 2 && i.err.contains("bytes; a shard index has at most"), "\(i.err)")
        try sparse(dir.path("policy.json"), 2 << 20)
        let p = try run(["budget", "--policy-file", dir.path("policy.json")])
        #expect(p.status == 2 && p.err.contains("bytes; a policy file has at most"), "\(p.err)")
        try sparse(dir.path("r.json"), (1 << 30) + 1)
        let r = try run(["report", "merge", dir.path("r.json")])
        #expect(r.status == 2 && r.err.contains("bytes; a verify report has at most"), "\(r.err)")
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

/// Well-formed files that say what the suite does not support: refused at load, named.
@Suite struct UnsupportedValuesTests {
    @Test func aTensorNamedTwiceIsRefused() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian, Array.init)
        bytes += Array(header.utf8) + [0, 0, 128, 63]
        let dir = try TempDir()
        defer { dir.cleanup() }
        try bytes.write(to: dir.path("d.safetensors"))
        let e = inputError { _ = try SafeTensorsFile(path: dir.path("d.safetensors")) }
        #expect(e?.kind == .duplicateTensor && e?.object == "a", "\(String(describing: e))")
        // Keys inside a tensor's entry, and the same name in a string value, are not keys of the header.
        #expect(SafeTensorsFile.repeatedTopLevelKey(Data(#"{"a":{"dtype":"a","shape":[1]},"b":"a"}"#.utf8)) == nil)
    }

    @Test(arguments: [("language_model.model.norm.weight", UInt16(0x7FC0), WeightStorage.float32),
                      ("language_model.model.layers.3.mlp.up_proj.weight", UInt16(0x7F80), WeightStorage.mappedBF16),
                      ("language_model.model.layers.0.self_attn.q_proj.weight", UInt16(0xFF80), WeightStorage.float32),
                      ("multi_modal_projector.linear_1.weight", UInt16(0x7FC0), WeightStorage.mappedBF16)])
    func nonFiniteWeightsAreRefusedNamingTheTensor(tensor: String, bits: UInt16, storage: WeightStorage) throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let m = dir.url.appendingPathComponent("m")
        try FileManager.default.copyItem(at: Repo.model("tiny-llama"), to: m)  // bf16 tensors
        let file = m.appendingPathComponent("model.safetensors").path
        let info = try SafeTensorsFile(path: file).info(tensor)
        #expect(info.dtype == .BF16)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        let headerLength = Int(bytes[0..<8].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let at = 8 + headerLength + info.dataRange.lowerBound + 2 * 5  // element 5
        bytes[at] = UInt8(bits & 0xFF)
        bytes[at + 1] = UInt8(bits >> 8)
        try bytes.write(to: file)
        let e = inputError { _ = try ModelWeights.load(directory: m, storage: storage) }
        #expect(e?.object == tensor && e?.detail.contains("element 5") == true && e?.detail.contains("finite") == true, "\(String(describing: e))")
    }

    @Test func unsupportedConfigValuesAreRefused() throws {
        // A LLaVA config: the language model's keys are under text_config, and so is the name.
        let base = try JSONSerialization.jsonObject(with: Data(contentsOf: Repo.model("tiny-qwen2").appendingPathComponent("config.json"))) as! [String: Any]
        for (key, value, object) in [("rope_parameters", "yarn" as Any, "text_config.rope_parameters"),
                                     ("max_position_embeddings", -1 as Any, "text_config.max_position_embeddings"),
                                     ("rope_scaling", ["rope_type": "yarn", "factor": 4] as Any, "text_config.rope_scaling")] {
            var c = base
            var text = c["text_config"] as! [String: Any]
            text[key] = value
            c["text_config"] = text
            let e = inputError { _ = try ModelConfig.parse(json: try JSONSerialization.data(withJSONObject: c), file: "config.json") }
            #expect(e?.object == object, "\(key): \(String(describing: e))")
        }
    }
}
