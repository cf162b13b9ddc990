import ArgumentParser
import Foundation
import RerouteFast
import RerouteFixtures
import RerouteHDF5
import RerouteModel
import RerouteRouting
import RerouteTrace
import RerouteVerify

struct CheckLayersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-layers",
        abstract: "Check chosen layers of a real-size model: fast run, then each layer alone on the reference, teacher-forced.",
        discussion: HelpText.reflowed("""
            For models too big for a whole reference run (SPEC.md §9.7). The fast decoder runs the
            policy on the case once; then, for each layer of --layers, the scalar reference decoder
            runs that layer alone with the fast run's input to it and the fast run's plan, and at a
            decision layer decides again from that input (earlier decisions forced to the fast
            run's). Each layer's output, scores and route are judged with the fp32 preset for one
            layer. Progress goes to standard error. Exit 0 every layer agrees, 1 one differs, 2 error.
            """))
    @Option(help: "Model folder (config.json + safetensors).") var model: String
    @Option(name: .customLong("case"), help: "HDF5 file with an /inputs group.") var caseFile: String?
    @Option(help: "Instead of --case: a random case with a ROWSxCOLS image (or FRAMESxROWSxCOLS video) of embeddings (35 prefix, 1 suffix token).") var grid: ImageGrid?
    @Option(help: "Policy name (`reroute policy list`).") var policy: String?
    @Option(help: "Policy file (reroute.policy v1).") var policyFile: String?
    @Option(help: "Comma-separated layers to check (e.g. 0,15,31).") var layers: String
    @Option(help: "Weight storage: f32, or mapped-bf16 (bf16 checkpoints stay memory-mapped).") var weights: WeightStorageOption = .f32
    @Option(help: "Worker threads of the fast decoder (default: all cores).") var threads: Int?
    @Flag(name: .shortAndLong, help: "List passing objects too.") var verbose = false

    var layerList: [Int]? {
        let parts = layers.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        return parts.isEmpty || parts.contains(where: { $0 == nil }) ? nil : Array(Set(parts.compactMap { $0 })).sorted()
    }

    func validate() throws {
        try OptionLimits.check("--threads", threads, OptionLimits.threads)
        if (policy == nil) == (policyFile == nil) { throw ValidationError("give --policy NAME or --policy-file FILE (one of them)") }
        if (caseFile == nil) == (grid == nil) { throw ValidationError("give --case FILE or --grid ROWSxCOLS (one of them)") }
        if layerList == nil { throw ValidationError("--layers: '\(layers)' is not a comma-separated list of layer indices") }
        if let threads, !(1...1024).contains(threads) { throw ValidationError("--threads must be 1…1024, got \(threads)") }
    }

    func run() throws {
        let p = try resolvePolicies(names: policy.map { [$0] } ?? [], files: policyFile.map { [$0] } ?? [])[0]
        let dir = URL(fileURLWithPath: model)
        let t0 = Date()
        let w = try ModelWeights.load(directory: dir, storage: weights.storage)
        progress(String(format: "loaded %@ (%d layers, d=%d, weights %@) in %.1f s", model, w.config.layers, w.config.hiddenSize,
                        weights.rawValue, Date().timeIntervalSince(t0)))
        if let policyFile { try PolicyFile.check(p, layers: w.config.layers, file: policyFile) }
        let c: PromptCase
        if let caseFile {
            c = try readingUntrusted(caseFile, kind: "case") {
                try PromptCaseIO.read(try HDF5File(readingFrom: caseFile), name: URL(fileURLWithPath: caseFile).deletingPathExtension().lastPathComponent)
            }
        } else {
            c = RandomCase.make(config: w.config, name: "random-\(grid!.description)", grid: grid!, prefix: 35, suffix: 1,
                                visual: .embeddings, decodeSteps: 0, seed: 7)
        }
        let source = caseFile ?? "<random case>"
        try c.validate(for: w.config, projector: w.projector, file: source)
        let report = try LayerCheck.run(weights: w, model: dir.lastPathComponent, case: c, adapter: p, layers: layerList!,
                                        fastOptions: FastDecoderOptions(threads: threads), file: source, progress: { progress($0) })
        print("check-layers: \(p.name) on \(c.name), \(w.config.layers) layers; preset \(report.rules.name) for one layer — \(report.rules.reason)")
        print(pad("layer", 7) + pad("objects", 9) + pad("worst/bound", 13) + pad("reference s", 13) + "status")
        for r in report.layers {
            let worst = r.findings.compactMap { $0.tensor?.worstRatio }.max() ?? 0
            print(pad("\(r.layer)", 7) + pad("\(r.findings.count)", 9) + pad(String(format: "%.3f", worst), 13)
                  + pad(String(format: "%.1f", r.seconds), 13) + (r.passed ? "ok" : "FAILED"))
        }
        for r in report.layers {
            for f in r.findings where verbose || f.status != .passed {
                print("  layer \(r.layer) \(f.status == .failed ? "DIFF" : f.status.rawValue) \(f.object): \(f.summary)")
                for d in f.details { print("        \(d)") }
            }
        }
        print(String(format: "fast run %.1f s; reference %.1f s for %d layer(s)", report.fastSeconds,
                     report.layers.map(\.seconds).reduce(0, +), report.layers.count))
        if !report.passed { throw ExitCode(1) }
    }
}
