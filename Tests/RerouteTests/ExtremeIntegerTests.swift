import Foundation
import Testing
@testable import RerouteModel
@testable import RerouteRouting
@testable import RerouteTrace
@testable import RerouteVerify
import RerouteHDF5

/// Extreme integers (0, −1, ±2^31, 2^63 − 1, −2^63) in every integer field of every input
/// format and every numeric command-line option: each is refused naming the field (exit 2
/// from the CLI), or — where the value is inside the documented limit (SPEC.md §12) —
/// accepted; never a crash, an overflow trap or an unbounded allocation.
@Suite struct ExtremeIntegerTests {
    static let extremes: [Int] = [0, -1, 1 << 31, -(1 << 31), Int.max, Int.min]

    /// The error `body` throws as text, nil when it succeeds.
    static func failure(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return "\(error)" }
    }

    /// The inputs of the shipped dense trace of tiny-llama, as a case.
    static func shippedCase() throws -> PromptCase {
        try PromptCaseIO.read(try HDF5File(readingFrom: Repo.root.appendingPathComponent(caseFile).path), name: "c")
    }

    static func write(_ c: PromptCase, to path: String) throws {
        let w = try HDF5Writer(creating: path)
        try PromptCaseIO.write(c, to: w)
        try w.commit()
    }

    // MARK: command line

    static let model = "golden/models/tiny-llama", caseFile = "golden/traces/tiny-llama/dense.h5"
    /// (arguments before the option, option, accepted range). Commands that would then run
    /// long (bench) are only given out-of-range values.
    static let options: [([String], String, ClosedRange<Int>)] = [
        (["budget"], "--text-tokens", 1...PromptCase.maxSequenceLength),
        (["budget"], "--kv-bytes", 1...16),
        (["time", "--model", model, "--case", caseFile], "--repeats", 1...10_000),
        (["time", "--model", model, "--case", caseFile], "--warmup", 0...10_000),
        (["time", "--model", model, "--case", caseFile], "--threads", 1...256),
        (["check-layers", "--model", model, "--case", caseFile, "--policy", "fastv", "--layers", "0"], "--threads", 1...256),
        (["verify", "--traces", "none", "--models", "/nonexistent"], "--jobs", 1...256),
        (["diff", caseFile, caseFile], "--max-reported", 0...100_000),
        (["diff", caseFile, caseFile], "--route-slack", 0...(1 << 24)),
        (["bench"], "--repeats", 1...10_000),
        (["bench"], "--threads", 1...256),
        (["bench"], "--layers", 1...128),
        (["bench"], "--policy-rounds", 1...10_000),
        (["bench"], "--packed-row-limit", 0...(1 << 16)),
    ]

    @Test(arguments: 0..<options.count)
    func numericOptionsAreBoundedAndNamed(index: Int) throws {
        let (prefix, option, range) = Self.options[index]
        for v in Self.extremes {
            if range.contains(v) && (prefix[0] == "bench" || v > 10_000) { continue }
            let r = try Subprocess.run(prefix + [option, "\(v)"], deadline: 60)
            #expect(!r.signaled && !r.timedOut, "\(option) \(v): \(r.err.prefix(400))")
            if range.contains(v) {
                #expect(r.status != 2 || !r.err.contains(option), "\(option) \(v) is inside \(range): \(r.err.prefix(300))")
            } else {
                #expect(r.status == 2 && r.err.contains("reroute: error:") && r.err.contains(option), "\(option) \(v): exit \(r.status), \(r.err.prefix(300))")
            }
        }
        // Grids: sides or products past the limits are refused by the one grid syntax.
        if index == 0 {
            for g in ["0x24", "-1x24", "\(Int.max)x2", "4000000000x4000000000", "300x300"] {
                let r = try Subprocess.run(["budget", "--grid", g], deadline: 60)
                #expect(r.status == 2 && !r.signaled && r.err.contains("--grid"), "--grid \(g): \(r.err.prefix(300))")
            }
        }
    }

    // MARK: safetensors headers

    /// One F32 tensor whose shape or data offsets hold an extreme integer: refused naming
    /// the tensor (sizes are overflow-checked and matched to the byte range before any read).
    @Test(arguments: ["shape", "begin", "end"])
    func safetensorsIntegersAreBoundedAndNamed(field: String) throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        for (k, v) in Self.extremes.enumerated() {
            let shape = field == "shape" ? "[\(v), 2]" : "[1, 2]"
            let offsets = field == "begin" ? "[\(v), 8]" : field == "end" ? "[0, \(v)]" : "[0, 8]"
            let header = #"{"t":{"dtype":"F32","shape":"# + shape + #","data_offsets":"# + offsets + "}}"
            let path = dir.path("x\(k).safetensors")
            try SafeTensorsBuilder.file(header: header, data: [UInt8](repeating: 0, count: 8)).write(to: path)
            let error = Self.failure { _ = try SafeTensorsFile(path: path).floats("t") }
            if field == "begin", v == 0 { #expect(error == nil, "\(String(describing: error))"); continue }  // the valid file
            #expect(error != nil && error!.contains(path), "\(field) = \(v): \(String(describing: error))")
        }
    }

    // MARK: config.json

    static let configKeys = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                             "intermediate_size", "vocab_size", "max_position_embeddings"]

    @Test(arguments: configKeys)
    func configIntegersAreBoundedAndNamed(key: String) throws {
        let base: [String: Any] = ["model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                                   "num_key_value_heads": 4, "head_dim": 16, "intermediate_size": 8, "vocab_size": 10,
                                   "max_position_embeddings": 128]
        for v in Self.extremes {
            var c = base
            c[key] = v
            let e = inputError { _ = try ModelConfig.parse(json: try JSONSerialization.data(withJSONObject: c), file: "config.json") }
            #expect(e?.object == key, "\(key) = \(v): \(String(describing: e))")
        }
    }

    /// Sizes each under its own cap but too big together: refused by the one model-size
    /// budget before any weight is looked at.
    @Test func theModelSizeBudgetBoundsTheProduct() throws {
        let c = #"{"model_type": "llama", "hidden_size": 65536, "num_attention_heads": 512, "vocab_size": 4000000, "num_hidden_layers": 2}"#
        let e = inputError { _ = try ModelConfig.parse(json: Data(c.utf8), file: "config.json") }
        #expect(e?.detail.contains("2^37") == true, "\(String(describing: e))")
        // LLaVA-1.5-13B and Qwen2.5-VL-7B fit (their published configs are in golden/configs).
        for f in ["llava-1.5-13b.json", "qwen2.5-vl-7b.json"] {
            #expect(throws: Never.self) { _ = try ModelConfig.load(from: Repo.root.appendingPathComponent("golden/configs/" + f)) }
        }
    }

    /// A case whose token list is longer than a case may be is refused on its declared shape,
    /// naming the dataset, before it is read.
    @Test func caseSizesAreBoundedBeforeReading() throws {
        var c = try Self.shippedCase()
        c.prefixTokens = [Int](repeating: 1, count: PromptCase.maxSequenceLength + 1)
        let dir = try TempDir()
        defer { dir.cleanup() }
        try Self.write(c, to: dir.path("long.h5"))
        let error = Self.failure { _ = try PromptCaseIO.read(try HDF5File(readingFrom: dir.path("long.h5")), name: "c") }
        #expect(error?.contains("prefix_ids") == true && error?.contains("\(PromptCase.maxSequenceLength)") == true, "\(String(describing: error))")
    }

    // MARK: policy files

    @Test(arguments: ["reference_depth", "decision_layers", "keep_counts", "per_region", "last_rows"])
    func policyIntegersAreBoundedAndNamed(field: String) throws {
        for v in Self.extremes {
            var p = PolicyCatalog.named("reroute-nuwa-64")!
            switch field {
            case "reference_depth": p.referenceDepth = v
            case "decision_layers": p.decisionLayers[0] = v
            case "keep_counts": p.keepCounts = p.decisionLayers.map { _ in v }; p.keepRatios = []
            case "per_region": p.visionStage!.perRegion = v
            default: p.scorer.query = .lastRows(v)
            }
            let text = PolicyFile.encode(p)
            let error = Self.failure { _ = try PolicyFile.decode(Data(text.utf8), file: "p.json") }
            if v == 0, field == "decision_layers" { #expect(error == nil, "layer 0 (the LLM input): \(error ?? "")"); continue }
            #expect(error != nil && error!.contains("p.json"), "\(field) = \(v) accepted")
        }
    }

    // MARK: prompt cases

    /// A shipped case with one integer replaced, written and read back, then validated
    /// against tiny-llama: refused naming the dataset.
    @Test(arguments: ["prefix_ids", "suffix_ids", "grid", "positions", "decode_steps"])
    func caseIntegersAreBoundedAndNamed(dataset: String) throws {
        let original = try Self.shippedCase()
        let config = try ModelConfig.load(from: Repo.model("tiny-llama").appendingPathComponent("config.json"))
        let dir = try TempDir()
        defer { dir.cleanup() }
        for (k, v) in Self.extremes.enumerated() {
            var c = original
            switch dataset {
            case "prefix_ids": c.prefixTokens[0] = v
            case "suffix_ids": c.suffixTokens[0] = v
            case "grid": c.grid = ImageGrid(rows: v, cols: c.grid.cols)
            case "positions":
                var axis = c.positions.axes[0]
                axis[3] = v
                c.positions = PositionIDs(axes: [axis])
            default: c.decodeSteps = v
            }
            if v == 0, dataset != "grid" { continue }  // a valid token id, position and step count
            let path = dir.path("c\(k).h5")
            try Self.write(c, to: path)
            let error = Self.failure {
                let read = try PromptCaseIO.read(try HDF5File(readingFrom: path), name: "c")
                try read.validate(for: config, projector: nil, file: path, checkProjector: false)
            }
            #expect(error != nil && error!.contains(dataset), "\(dataset) = \(v): \(String(describing: error))")
        }
    }

    // MARK: traces

    /// A golden trace with one integer replaced, written and read back: refused naming the
    /// dataset or attribute (so no later arithmetic or indexing meets the value).
    @Test(arguments: ["kv_length", "decode_positions", "tokens", "kept", "candidates", "budget", "layer", "kv_entries", "bytes_per_element"])
    func traceIntegersAreBoundedAndNamed(field: String) throws {
        let golden = try Trace.read(from: Repo.root.appendingPathComponent("golden/traces/tiny-llama/reroute-fastv-64.h5").path)
        let dir = try TempDir()
        defer { dir.cleanup() }
        for (k, v) in Self.extremes.enumerated() {
            var t = golden
            switch field {
            case "kv_length": t.kvLength[2] = v
            case "decode_positions": t.decodePositions[0] = v
            case "tokens": t.decodeTokens[0] = v
            case "kept": t.decisions[0].kept[0] = v
            case "candidates": t.decisions[0].candidates[0] = v
            case "budget": t.decisions[0].budget = v
            case "layer": t.decisions[0].layer = v
            case "kv_entries": t.budget.layers[1].kvEntries = v
            default: t.budget.bytesPerElement = v
            }
            // 0 is a valid kv length, decode position, token id and decision layer (the LLM
            // input); the golden's own values pass.
            let path = dir.path("t\(k).h5")
            try t.write(to: path)
            let error = Self.failure { _ = try Trace.read(from: path) }
            if v == 0, ["decode_positions", "tokens", "kv_entries", "budget", "kv_length", "kept", "candidates", "layer"].contains(field) { continue }
            #expect(error != nil && error!.contains(field), "\(field) = \(v): \(String(describing: error))")
        }
    }

    // MARK: verify reports (`report merge`)

    /// A shard report as `reroute verify --shard 0/2 --report` writes it: one transformers case
    /// with one tensor and one mismatch, one golden trace run, the manifest.
    static func shardReport() throws -> [String: Any] {
        let tensor = VerifyReportData.Tensor(name: "reference/hidden", passed: true, gate: nil, nmse: 1e-9, nmseLimit: 1e-6, worstRatio: 0.5,
                                             mismatched: 0, total: 64, worst: [Mismatch(row: 1, column: 2, expected: 1, actual: 1, bound: 1)])
        let c = VerifyReportData.Case(job: 0, model: "tiny-llama", caseName: "c", file: "c.h5", passed: true, tensors: [tensor], exact: [])
        let run = VerifyReportData.Run(job: 2, file: "t.h5", model: "tiny-llama", policy: "fastv", decoder: "fast", mode: "replay", preset: "default",
                                       passed: true, firstDivergence: nil, compared: 5, failed: 0, accepted: 1, skipped: 0, failures: [],
                                       acceptedFindings: [], report: "")
        let manifest = VerifyReportData.Manifest(folder: "golden/traces", files: 3, generator: "g", seed: 7, problems: [])
        let r = VerifyReportData(shard: Shard(index: 0, count: 2), manifest: manifest, cases: [c], runs: [run], seconds: 1.5)
        return try JSONSerialization.jsonObject(with: Data(try r.json().utf8)) as! [String: Any]
    }

    /// `object` with the value at `path` (keys and array indices) replaced by `value`.
    static func replacing(_ object: Any, _ path: ArraySlice<Any>, with value: Any) -> Any {
        guard let step = path.first else { return value }
        if var d = object as? [String: Any], let key = step as? String {
            d[key] = replacing(d[key]!, path.dropFirst(), with: value)
            return d
        }
        var a = object as! [Any]
        a[step as! Int] = replacing(a[step as! Int], path.dropFirst(), with: value)
        return a
    }

    /// The report's integer fields as the errors name them.
    static let reportFields = [
        "shard.index", "shard.count", "checks", "failed", "manifest.files",
        "transformers_cases[0].job", "transformers_cases[0].tensors[0].total", "transformers_cases[0].tensors[0].mismatched",
        "transformers_cases[0].tensors[0].worst[0].row", "transformers_cases[0].tensors[0].worst[0].column",
        "golden_traces[0].job", "golden_traces[0].compared", "golden_traces[0].failed", "golden_traces[0].accepted", "golden_traces[0].skipped",
    ]

    /// Every integer of a verify report read back: refused naming the field, unless inside
    /// what a verify run can write (then the report reads; a merge of it must not trap).
    @Test(arguments: 0..<reportFields.count)
    func reportIntegersAreBoundedAndNamed(index: Int) throws {
        let name = Self.reportFields[index]
        let path: [Any] = name.split(whereSeparator: { ".[]".contains($0) }).map { Int($0).map { $0 as Any } ?? String($0) }
        let field = "\(path.last!)"
        let report = try Self.shardReport()
        #expect(Self.failure { _ = try VerifyReportData.read(try JSONSerialization.data(withJSONObject: report), file: "r.json") } == nil)
        for v in Self.extremes {
            let data = try JSONSerialization.data(withJSONObject: Self.replacing(report, path[...], with: v))
            var read: VerifyReportData?
            let error = Self.failure { read = try VerifyReportData.read(data, file: "r.json") }
            if let read {
                // Accepted values are those a run can write; merging the shard alone must end in an error, not a trap.
                let valid: Bool = switch field {
                case "index": v == 0 || v == 1
                case "count": v >= 1 && v <= Shard.maxCount
                case "job": v >= 0 && v < VerifyReportData.maxJobs && v != (path[0] as? String == "golden_traces" ? 0 : 2)  // no repeats
                case "checks": false
                case "failed" where path.count == 1: v == 0
                case "mismatched": v == 0
                default: v >= 0
                }
                #expect(valid, "\(name) = \(v) was accepted")
                _ = try? VerifyReportData.merge([("r.json", read)])
            } else {
                #expect(error!.contains("r.json") && error!.contains(name), "\(name) = \(v): \(error!)")
            }
        }
    }

    /// The CLI: a shard count of −1 (which once trapped the merge) is refused with exit 2.
    @Test func reportMergeRefusesABadShardCount() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        for (i, count) in [(0, -1), (1, -1)] {
            let r = Self.replacing(Self.replacing(try Self.shardReport(), ["shard", "count"][...], with: count), ["shard", "index"][...], with: i)
            try JSONSerialization.data(withJSONObject: r).write(to: URL(fileURLWithPath: dir.path("s\(i).json")))
        }
        let r = try Subprocess.run(["report", "merge", dir.path("s0.json"), dir.path("s1.json")], deadline: 60)
        #expect(r.status == 2 && !r.signaled && r.err.contains("s0.json: shard"), "\(r.err)")
    }
}
