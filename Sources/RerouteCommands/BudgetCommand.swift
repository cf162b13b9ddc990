import ArgumentParser
import Foundation
import RerouteModel
import RerouteRouting
import RerouteVerify

struct BudgetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "budget",
        abstract: "Print a policy's per-layer token counts, FLOPs and KV cache for a model shape.",
        discussion: HelpText.reflowed("""
            Needs only a config.json (no weights): a model folder, an HF config file, or one of
            golden/configs (the published llava-1.5-7b.json, llava-1.5-13b.json, qwen2.5-vl-3b.json,
            qwen2.5-vl-7b.json). Columns: processed text and
            visual tokens per layer; FLOPs exact for this architecture (GQA, causal attention,
            multiply-add = 2); MACs in the FastV-paper (n = all tokens, 2ndm) and PDrop-paper
            (n = image tokens, 3ndm) conventions; KV entries and bytes. Totals and avg_T
            (mean visual tokens per layer) follow, and the scoring work of the decisions, which
            the budget leaves out (per decision for one policy; the "scoring(T)" column for
            all). SPEC.md §8.13 gives the formulas.
            Policies: \(PolicyCatalog.names.joined(separator: ", ")).
            """))

    @Option(help: "A config.json, or a model folder holding one.")
    var config: String = "golden/configs/llava-1.5-7b.json"

    @Option(help: "Policy name (see the list above), or 'all' for one summary line each.")
    var policy: String = "all"

    @Option(help: "Policy file (reroute.policy v1), instead of --policy (repeatable).")
    var policyFile: [String] = []

    @Option(help: "Text tokens around the image (LLaVA-1.5's vicuna_v1 prompt: 35 before + a short question).")
    var textTokens = 36

    @Option(help: "Image grid ROWSxCOLS (LLaVA-1.5 at 336 px: 24x24), or FRAMESxROWSxCOLS for a video.")
    var grid = ImageGrid(rows: 24, cols: 24)

    @Option(help: "Bytes per KV element (2 for fp16/bf16, 4 for f32).")
    var kvBytes = 2

    @Flag(help: "Machine-readable JSON on standard output (reroute.budget v1): every policy's per-layer budget and scoring costs.")
    var json = false

    func validate() throws {
        try OptionLimits.check("--text-tokens", textTokens, OptionLimits.textTokens)
        try OptionLimits.check("--kv-bytes", kvBytes, OptionLimits.kvBytes)
        try OptionLimits.check("--text-tokens plus the grid's tokens", textTokens + grid.count, OptionLimits.textTokens)
    }

    func run() throws {
        var url = URL(fileURLWithPath: config)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue {
            url.appendPathComponent("config.json")
        }
        let c = try ModelConfig.load(from: url)
        let g = grid
        let policies: [RoutingPolicy]
        if !policyFile.isEmpty {
            policies = try resolvePolicies(names: [], files: policyFile)
            for (p, f) in zip(policies, policyFile) { try PolicyFile.check(p, layers: c.layers, file: f) }
        } else if policy == "all" {
            // Every shipped policy defined for the grid; the others are named with the reason.
            policies = PolicyCatalog.all.filter { p in
                do {
                    try p.check(grid: g)
                    return true
                } catch {
                    FileHandle.standardError.write(Data("budget: \(p.name) left out: \(error)\n".utf8))
                    return false
                }
            }
        } else {
            policies = try resolvePolicies(names: [policy], files: [])
        }
        if json { return try printJSON(c, policies, g, url) }
        print("model: \(url.path) (\(c.family.rawValue), \(c.layers) layers, d=\(c.hiddenSize), H=\(c.heads), H_kv=\(c.kvHeads), m=\(c.intermediateSize))")
        print("input: \(textTokens) text tokens, \(g.description) = \(g.count) visual tokens, KV at \(kvBytes) bytes/element\n")
        if policies.count == 1 {
            let r = try BudgetCalculator.report(config: c, policy: policies[0], textTokens: textTokens, grid: g, bytesPerElement: kvBytes)
            print(row(["layer", "text", "visual", "TFLOPs", "FastV-MACs(T)", "PDrop-MACs(T)", "KV entries", "KV MiB"]))
            for l in r.layers {
                print(row(["\(l.layer)", "\(l.textTokens)", "\(l.visualTokens)", t(l.flops), t(l.flopsFastVPaper), t(l.flopsPDropPaper),
                           "\(l.kvEntries)", String(format: "%.2f", Double(l.kvBytes) / 1_048_576)]))
            }
            for cost in try BudgetCalculator.scoringCosts(config: c, policy: policies[0], textTokens: textTokens, grid: g) {
                print("decision at layer \(cost.layer): scoring over \(cost.keys) keys, \(cost.queryRows) query row(s), K projected for "
                      + "\(cost.extraKeys) tokens the layer does not process itself: \(t(cost.flops)) TFLOPs (not in the budget)")
            }
            print("")
        }
        print(row(["policy", "avg_T", "TFLOPs", "scoring(T)", "FastV-MACs(T)", "PDrop-MACs(T)", "KV entries", "KV MiB", "matching"], width: 15))
        for p in policies {
            let r = try BudgetCalculator.report(config: c, policy: p, textTokens: textTokens, grid: g, bytesPerElement: kvBytes)
            let matching: String = switch r.matching {
            case .none: "-"
            case .perLayer(let base): "per layer = \(base)"
            case .averageTokens(let base): "avg_T ~ \(base)"
            }
            let scoring = try BudgetCalculator.scoringCosts(config: c, policy: p, textTokens: textTokens, grid: g).map(\.flops).reduce(0, +)
            print(row([p.name, String(format: "%.2f", r.averageVisualTokens), t(r.totalFlops), t(scoring), t(r.totalFlopsFastVPaper),
                       t(r.totalFlopsPDropPaper), "\(r.totalKVEntries)", String(format: "%.1f", Double(r.totalKVBytes) / 1_048_576), matching],
                      width: 15))
        }
    }

    func t(_ x: Double) -> String { String(format: "%.4f", x / 1e12) }

    func row(_ cells: [String], width: Int = 14) -> String {
        cells.enumerated().map { i, s in
            let w = i == 0 ? max(width, 26) : width
            return s.count >= w ? s + " " : s + String(repeating: " ", count: w - s.count)
        }.joined()
    }

    func printJSON(_ c: ModelConfig, _ policies: [RoutingPolicy], _ g: ImageGrid, _ url: URL) throws {
        struct Cost: Encodable { var layer: Int, keys: Int, queryRows: Int, extraKeys: Int, flops: Double }
        struct Entry: Encodable { var report: BudgetReport, scoring: [Cost], scoringFlops: Double }
        struct Report: Encodable {
            var schema = "reroute.budget", schemaVersion = 1, config: String, textTokens: Int, grid: [String: Int], kvBytesPerElement: Int
            var policies: [Entry]
        }
        let entries = try policies.map { p in
            let costs = try BudgetCalculator.scoringCosts(config: c, policy: p, textTokens: textTokens, grid: g)
            return Entry(report: try BudgetCalculator.report(config: c, policy: p, textTokens: textTokens, grid: g, bytesPerElement: kvBytes),
                         scoring: costs.map { Cost(layer: $0.layer, keys: $0.keys, queryRows: $0.queryRows, extraKeys: $0.extraKeys, flops: $0.flops) },
                         scoringFlops: costs.map(\.flops).reduce(0, +))
        }
        print(try ReportJSON.encode(Report(config: url.path, textTokens: textTokens, grid: ["rows": g.rows, "cols": g.cols],
                                           kvBytesPerElement: kvBytes, policies: entries)))
    }
}
