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
        discussion: """
            The case is read from the /inputs group of an HDF5 file: a transformers reference case
            (golden/models/*/cases/*.h5) or any trace. The trace (SPEC.md §9) is written atomically
            and never over an existing file unless --overwrite.
            Policies: \(PolicyCatalog.names.joined(separator: ", ")).
            """)
    @Option(help: "Model folder (config.json + safetensors).") var model: String
    @Option(name: .customLong("case"), help: "HDF5 file with an /inputs group.") var caseFile: String
    @Option(help: "Policy name.") var policy: String
    @Option(help: "Decoder: reference or fast.") var decoder = "reference"
    @Option(help: "Output trace file.") var out: String
    @Option(help: "Seed recorded in the trace.") var seed = 0
    @Flag(help: "Replace an existing output file.") var overwrite = false

    func run() throws {
        guard let p = PolicyCatalog.named(policy) else {
            throw ValidationError("unknown policy '\(policy)'; known: \(PolicyCatalog.names.joined(separator: ", "))")
        }
        guard ["reference", "fast"].contains(decoder) else { throw ValidationError("unknown decoder '\(decoder)'; available: reference, fast") }
        if !overwrite, FileManager.default.fileExists(atPath: out) {
            throw ValidationError("\(out) exists; pass --overwrite to replace it")
        }
        let dir = URL(fileURLWithPath: model)
        let weights = try ModelWeights.load(directory: dir)
        let (name, c) = try readingUntrusted(caseFile, kind: "case") {
            let f = try HDF5File(readingFrom: caseFile)
            let name = (try? f.stringAttribute("case")) ?? URL(fileURLWithPath: caseFile).deletingPathExtension().lastPathComponent
            return (name, try PromptCaseIO.read(f, name: name))
        }
        progress("running \(p.name) on \(name) (\(c.sequenceLength) tokens, \(weights.config.layers) layers)")
        let trace = decoder == "fast"
            ? try TraceRecorder.record(decoder: FastDecoder(weights: weights), model: dir.lastPathComponent, case: c, policy: p,
                                       seed: seed, commit: gitCommit(), file: caseFile)
            : try TraceRecorder.record(decoder: ReferenceDecoder(weights: weights), model: dir.lastPathComponent, case: c, policy: p,
                                       seed: seed, commit: gitCommit(), file: caseFile)
        try trace.write(to: out, overwrite: overwrite)
        print("wrote \(out): \(trace.decisions.count) decision(s), tokens \(trace.decodeTokens), avg_T \(String(format: "%.2f", trace.budget.averageVisualTokens))")
    }
}

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare two traces; exit 0 same, 1 differences, 2 error.",
        discussion: """
            Compares every object in computation order (SPEC.md §9.3): inputs bitwise, routes as sets
            (Jaccard distance, differing indices; a differing kept index is a tie flip when the two
            candidates' scores differ by less than --tie-epsilon), positions, KV lengths, tokens and
            budgets exactly, hidden states and logits under the tolerance. Prints failing objects with
            their offending elements, the first divergence, and the failure list again.
            """)
    @Argument(help: "Expected trace.") var expected: String
    @Argument(help: "Actual trace.") var actual: String
    @Flag(help: "Machine-readable JSON report on standard output.") var json = false
    @Flag(name: .shortAndLong, help: "List passing objects too.") var verbose = false
    @Option(help: "Relative tolerance for hidden states and logits.") var rtol = DiffOptions.referenceGolden.tensors.relative
    @Option(help: "Absolute floor, as a fraction of each row's largest expected magnitude.") var rowFloor = DiffOptions.referenceGolden.tensors.rowFloor
    @Option(help: "NMSE limit per tensor.") var nmse = DiffOptions.referenceGolden.tensors.nmse
    @Option(help: "Score gap under which a differing kept index is a tie flip.") var tieEpsilon = DiffOptions.referenceGolden.tieEpsilon
    @Option(help: "Relative tolerance for decision scores.") var scoreRtol = DiffOptions.referenceGolden.scores.relative
    @Option(help: "Absolute floor for scores, as a fraction of the decision's largest expected score.")
    var scoreFloor = DiffOptions.referenceGolden.scores.rowFloor
    @Option(help: "NMSE limit for each decision's scores.") var scoreNmse = DiffOptions.referenceGolden.scores.nmse
    @Option(help: "Offending elements shown per dataset.") var maxReported = 8

    func run() throws {
        let e = try readingUntrusted(expected) { try Trace.read(from: expected) }
        let a = try readingUntrusted(actual) { try Trace.read(from: actual) }
        var o = DiffOptions.referenceGolden
        o.tensors = Tolerance(name: "command line", relative: rtol, rowFloor: rowFloor, nmse: nmse, reason: "--rtol/--row-floor/--nmse")
        o.scores = Tolerance(name: "command line (scores)", relative: scoreRtol, rowFloor: scoreFloor, nmse: scoreNmse,
                             reason: "--score-rtol/--score-floor/--score-nmse")
        o.tieEpsilon = tieEpsilon
        o.maxReported = maxReported
        let report = diffTraces(expected: e, actual: a, options: o, expectedName: expected, actualName: actual)
        print(json ? try report.json() : report.render(verbose: verbose))
        if !report.passed { throw ExitCode(1) }
    }
}

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print a trace's summary.")
    @Argument(help: "Trace file.") var file: String

    func run() throws {
        let t = try readingUntrusted(file) { try Trace.read(from: file) }
        let c = t.config
        print("""
            trace     \(file)  (\(Trace.schema) v\(Trace.schemaVersion))
            producer  \(t.provenance.producer) \(t.provenance.producerVersion) @ \(t.provenance.producerCommit); decoder \(t.provenance.decoder), mode \(t.provenance.mode)
            model     \(t.provenance.model): \(c.family.rawValue), \(c.layers) layers, d=\(c.hiddenSize), H=\(c.heads), H_kv=\(c.kvHeads)
            policy    \(t.policy.name): \(t.policy.action), positions \(t.policy.positions.rawValue), decisions at \(t.decisions.map(\.layer))
            case      \(t.input.name): \(t.input.prefixTokens.count) + \(t.input.grid.rows)x\(t.input.grid.cols) + \(t.input.suffixTokens.count) tokens; LLM sequence \(t.sequenceLength); seed \(t.provenance.seed)
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
