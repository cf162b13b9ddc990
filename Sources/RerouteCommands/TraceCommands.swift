import ArgumentParser
import Foundation
import RerouteFast
import RerouteHDF5
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace
import RerouteVerify

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a policy on a case and write its trace.",
        discussion: HelpText.reflowed("""
            The case is read from the /inputs group of an HDF5 file: a transformers reference case
            (golden/models/*/cases/*.h5) or any trace. The trace (SPEC.md §9) is written atomically
            and never over an existing file unless --overwrite.
            Policies: \(PolicyCatalog.names.joined(separator: ", ")).
            """))
    @Option(help: "Model folder (config.json + safetensors).") var model: String
    @Option(name: .customLong("case"), help: "HDF5 file with an /inputs group.") var caseFile: String
    @Option(help: "Policy name (`reroute policy list`).") var policy: String?
    @Option(help: "Policy file (reroute.policy v1; `reroute policy show NAME --json` gives one to start from).") var policyFile: String?
    @Option(help: "Decoder: reference or fast.") var decoder: DecoderKind = .reference
    @Option(help: "Weight storage: f32, or mapped-bf16 (bf16 checkpoints stay memory-mapped; the fast decoder only).")
    var weights: WeightStorageOption = .f32
    @Option(help: "Output trace file.") var out: String
    @Option(help: "Seed recorded in the trace.") var seed = 0
    @Flag(help: "Replace an existing output file.") var overwrite = false

    func validate() throws {
        if (policy == nil) == (policyFile == nil) { throw ValidationError("give --policy NAME or --policy-file FILE (one of them)") }
        if weights == .mappedBF16, decoder == .reference {
            throw ValidationError("--weights mapped-bf16 needs --decoder fast (the reference decoder computes from f32 weights)")
        }
    }

    func run() throws {
        let p = try resolvePolicies(names: policy.map { [$0] } ?? [], files: policyFile.map { [$0] } ?? [])[0]
        try FilePaths.checkOutput(out, inputs: [caseFile] + (policyFile.map { [$0] } ?? []), folders: [model], overwrite: overwrite)
        let dir = URL(fileURLWithPath: model)
        let weights = try ModelWeights.load(directory: dir, storage: self.weights.storage)
        if let policyFile { try PolicyFile.check(p, layers: weights.config.layers, file: policyFile) }
        let c = try readingUntrusted(caseFile, kind: "case") { try PromptCaseIO.read(file: caseFile) }
        progress("running \(p.name) on \(c.name) (\(c.sequenceLength) tokens, \(weights.config.layers) layers)")
        let bar = LayerProgress("\(decoder.rawValue) prefill", layers: weights.config.layers)
        let trace = decoder == .fast
            ? try TraceRecorder.record(decoder: FastDecoder(weights: weights), model: dir.lastPathComponent, case: c, policy: p,
                                       seed: seed, commit: gitCommit(), file: caseFile, onLayer: bar.layerDone)
            : try TraceRecorder.record(decoder: ReferenceDecoder(weights: weights), model: dir.lastPathComponent, case: c, policy: p,
                                       seed: seed, commit: gitCommit(), file: caseFile, onLayer: bar.layerDone)
        try trace.write(to: out, overwrite: overwrite)
        print("wrote \(out): \(trace.decisions.count) decision(s), tokens \(trace.decodeTokens), avg_T \(String(format: "%.2f", trace.budget.averageVisualTokens))")
    }
}

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Judge a trace against another; exit 0 same (or accepted), 1 differences, 2 error.",
        discussion: HelpText.reflowed("""
            Compares every object in computation order (SPEC.md §9.3): inputs bitwise; each decision's
            route (kept and deferred together) as sets of visual grid cells, where a differing kept
            index is accepted as a tie flip when the differing candidates' scores lie within ε of
            the decision's largest score (or, with --route-slack m, when each side's choice is in the
            other's top-(k+m)); processed sets, positions, KV lengths, tokens and budgets exactly;
            hidden states, scores and logits under the preset's tolerances; then the trace laws on
            both traces. After an accepted route difference, what depends on it is skipped (mode
            "stopped"); --replay --model DIR re-runs the actual trace's decoder with the expected
            trace's routes forced and compares everything (mode "lockstep").

            Presets: reference (both float64), fp32, bf16, fp16 — tolerances derived from the
            precision, the model's depth and widths (SPEC.md §9.3). Without --preset the preset
            follows from the traces' recorded decoder or /@dtype (the less precise side), and the
            report says which ran and why. --rtol, --row-floor, --nmse, --tie-epsilon and the
            score options override single values of the preset.
            """))
    @Argument(help: "Expected trace (e.g. a golden).") var expected: String
    @Argument(help: "Actual trace (e.g. your implementation's).") var actual: String
    @Option(help: "Tolerances: reference, fp32, bf16, fp16 (default: from the traces' recorded precision).")
    var preset: ComparisonPreset?
    @Flag(help: "Compare routes, processed sets, positions, KV lengths and budgets only (no hidden states, scores, logits, tokens).")
    var routesOnly = false
    @Option(help: "Accept a differing kept index when each side's choice is in the other's top-(k+m) by score.")
    var routeSlack: Int?
    @Flag(help: "After an accepted route difference, re-run the actual trace's decoder with the expected routes forced (needs --model).")
    var replay = false
    @Option(help: "Model folder, for --replay.") var model: String?
    @Flag(help: "Machine-readable JSON report on standard output.") var json = false
    @Flag(name: .shortAndLong, help: "List passing objects too.") var verbose = false
    @Option(help: "Relative tolerance for hidden states and logits (overrides the preset).") var rtol: Double?
    @Option(help: "Absolute floor, as a fraction of each row's largest expected magnitude (overrides the preset).") var rowFloor: Double?
    @Option(help: "NMSE limit per tensor (overrides the preset).") var nmse: Double?
    @Option(help: "Tie-flip ε, relative to the decision's largest score (overrides the preset).") var tieEpsilon: Double?
    @Option(help: "Relative tolerance for decision scores (overrides the preset).") var scoreRtol: Double?
    @Option(help: "Floor for scores, as a fraction of the decision's largest score (overrides the preset).") var scoreFloor: Double?
    @Option(help: "NMSE limit for each decision's scores (overrides the preset).") var scoreNmse: Double?
    @Option(help: "Offending elements shown per dataset.") var maxReported = 8

    func validate() throws {
        if replay, model == nil { throw ValidationError("--replay needs --model DIR (the model folder to re-run)") }
        if !replay, model != nil { throw ValidationError("--model is only used with --replay") }
        try OptionLimits.check("--route-slack", routeSlack, OptionLimits.routeSlack)
        try OptionLimits.check("--max-reported", maxReported, OptionLimits.maxReported)
        for (name, v) in [("--rtol", rtol), ("--row-floor", rowFloor), ("--nmse", nmse), ("--tie-epsilon", tieEpsilon),
                          ("--score-rtol", scoreRtol), ("--score-floor", scoreFloor), ("--score-nmse", scoreNmse)] {
            if let v, !(v >= 0 && v.isFinite) { throw ValidationError("\(name) must be a finite number ≥ 0, got \(v)") }
        }
    }

    func run() throws {
        let e = try readTrace(expected)
        let a = try readTrace(actual)
        var rules = preset.map {
            var r = ComparisonRules.preset($0, config: a.config, maxPosition: max(e.input.positions.maxPosition, a.input.positions.maxPosition))
            r.reason = "preset \($0.rawValue) (--preset); " + r.reason
            return r
        } ?? ComparisonRules.automatic(expected: e, actual: a)
        var overrides: [String] = []
        func set(_ v: Double?, _ flag: String, _ apply: (inout ComparisonRules, Double) -> Void) {
            if let v { apply(&rules, v); overrides.append("\(flag) \(v)") }
        }
        set(rtol, "--rtol") { $0.tensors.relative = $1 }
        set(rowFloor, "--row-floor") { $0.tensors.rowFloor = $1 }
        set(nmse, "--nmse") { $0.tensors.nmse = $1 }
        set(tieEpsilon, "--tie-epsilon") { $0.tieEpsilon = $1 }
        set(scoreRtol, "--score-rtol") { $0.scores.relative = $1 }
        set(scoreFloor, "--score-floor") { $0.scores.rowFloor = $1 }
        set(scoreNmse, "--score-nmse") { $0.scores.nmse = $1 }
        if !overrides.isEmpty {
            rules.reason += "; overridden on the command line: " + overrides.joined(separator: ", ")
            rules.tensors.name += "+overrides"
        }
        rules.routeSlack = routeSlack
        rules.routesOnly = routesOnly
        rules.maxReported = maxReported
        let verdict: Verdict
        if replay, let model {
            let replayer = try TraceRecorder.replayer(of: a, file: actual, weights: try ModelWeights.load(directory: URL(fileURLWithPath: model)),
                                                      modelFolder: model)
            verdict = try judge(expected: e, actual: a, rules: rules, expectedName: expected, actualName: actual, replay: replayer)
        } else {
            verdict = compareTraces(expected: e, actual: a, rules: rules, expectedName: expected, actualName: actual)
        }
        print(json ? try verdict.json() : verdict.render(verbose: verbose))
        if !verdict.passed { throw ExitCode(1) }
    }
}


struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print a trace's summary.")
    @Argument(help: "Trace file.") var file: String
    @Flag(help: "Machine-readable JSON on standard output (reroute.show v1).") var json = false

    func run() throws {
        let t = try readTrace(file)
        if json { return print(try ReportJSON.encode(TraceSummary(t, file: file))) }
        let c = t.config
        print("""
            trace     \(file)  (\(Trace.schema) v\(Trace.schemaVersion))
            producer  \(t.provenance.producer) \(t.provenance.producerVersion) @ \(t.provenance.producerCommit); decoder \(t.provenance.decoder), mode \(t.provenance.mode)
            model     \(t.provenance.model): \(c.family.rawValue), \(c.layers) layers, d=\(c.hiddenSize), H=\(c.heads), H_kv=\(c.kvHeads)
            policy    \(t.policy.name): \(t.policy.action), positions \(t.policy.positions.rawValue), decisions at \(t.decisions.map(\.layer))\(t.policy.visionStage != nil ? "; Nüwa stage 1 before the LLM" : t.policy.visionZip != nil ? "; VisionZip before the LLM, contiguous positions" : "")
            case      \(t.input.name): \(t.input.prefixTokens.count) + \(t.input.grid.description) + \(t.input.suffixTokens.count) tokens; LLM sequence \(t.sequenceLength); seed \(t.provenance.seed)
            """)
        print("\nlayer  processed  visual  positions        decode-pos  KV")
        let p = t.input.prefixTokens.count, n = t.llmGridIndices?.count ?? t.input.visual.count
        for l in 0..<c.layers {
            let visual = t.processed[l].filter { $0 >= p && $0 < p + n }.count
            let pos = t.layerPositions[l].axes.joined()
            print(pad("\(l)", 7) + pad("\(t.processed[l].count)", 11) + pad("\(visual)", 8)
                  + pad("\(pos.min() ?? 0)…\(pos.max() ?? 0)", 17) + pad("\(t.decodePositions[l])", 12) + "\(t.kvLength[l])")
        }
        print("\ndecisions")
        for d in t.decisions {
            let top = zip(d.candidates, d.scores).max { $0.1 < $1.1 }
            print("  layer \(d.layer): keep \(d.kept.count) of \(d.candidates.count) (budget \(d.budget)); kept \(d.kept.prefix(12))\(d.kept.count > 12 ? "…" : ""); top score \(top.map { String(format: "%.4g (token %d)", $0.1, $0.0) } ?? "-")")
        }
        print("\ndecode    tokens \(t.decodeTokens); KV after decode \(t.kvLengthAfterDecode)")
        print(String(format: "budget    avg_T %.2f visual tokens/layer, %.4g FLOPs, %d KV entries", t.budget.averageVisualTokens,
                     t.budget.totalFlops, t.budget.totalKVEntries))
    }
}

/// `reroute show --json`: a trace's provenance, per-layer table (sequence indices), decisions
/// (visual grid cells) and budget, every key present.
struct TraceSummary: Encodable {
    struct Layer: Encodable {
        var layer: Int, processed: Int, visual: Int, firstPosition: Int, lastPosition: Int, decodePosition: Int, kvLength: Int
    }
    struct Decision: Encodable {
        var layer: Int, budget: Int, candidates: Int, kept: [Int]
        @Nullable var topScore: Double?
        @Nullable var topCell: Int?
    }
    var schema = "reroute.show", schemaVersion = 1
    var file: String, producer: String, producerVersion: String, producerCommit: String, decoder: String, dtype: String, mode: String
    var model: String, seed: Int, policy: String, caseName: String
    var prefixTokens: Int, grid: [String: Int], suffixTokens: Int, sequenceLength: Int
    var indexSpaces = ["layers": "sequence index", "decisions": "visual grid cell (row·cols + col)"]
    var layers: [Layer], decisions: [Decision]
    var decodeTokens: [Int], kvLengthAfterDecode: [Int]
    var averageVisualTokens: Double, totalFlops: Double, totalKVEntries: Int

    init(_ t: Trace, file: String) {
        self.file = file
        producer = t.provenance.producer
        producerVersion = t.provenance.producerVersion
        producerCommit = t.provenance.producerCommit
        decoder = t.provenance.decoder
        dtype = t.provenance.dtype ?? ComparisonRules.precision(of: t).map { $0.0.rawValue } ?? "unknown"
        mode = t.provenance.mode.rawValue
        model = t.provenance.model
        seed = t.provenance.seed
        policy = t.policy.name
        caseName = t.input.name
        prefixTokens = t.input.prefixTokens.count
        grid = ["rows": t.input.grid.rows, "cols": t.input.grid.cols, "frames": t.input.grid.frames]
        suffixTokens = t.input.suffixTokens.count
        sequenceLength = t.sequenceLength
        let p = t.input.prefixTokens.count, n = t.llmGridIndices?.count ?? t.input.visual.count
        layers = (0..<t.config.layers).map { l in
            let pos = t.layerPositions[l].axes.joined()
            return Layer(layer: l, processed: t.processed[l].count, visual: t.processed[l].filter { $0 >= p && $0 < p + n }.count,
                         firstPosition: pos.min() ?? 0, lastPosition: pos.max() ?? 0, decodePosition: t.decodePositions[l], kvLength: t.kvLength[l])
        }
        decisions = t.decisions.map { d in
            let top = zip(d.candidates, d.scores).max { $0.1 < $1.1 }
            return Decision(layer: d.layer, budget: d.budget, candidates: d.candidates.count, kept: d.kept, topScore: top?.1, topCell: top?.0)
        }
        decodeTokens = t.decodeTokens
        kvLengthAfterDecode = t.kvLengthAfterDecode
        averageVisualTokens = t.budget.averageVisualTokens
        totalFlops = t.budget.totalFlops
        totalKVEntries = t.budget.totalKVEntries
    }
}
