import ArgumentParser
import Foundation
import RerouteModel
import RerouteVerify

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Validate a model folder (or a config.json alone) and print what the suite reads from it.",
        discussion: HelpText.reflowed("""
            Reads config.json as transformers does (llama, qwen2, llava, llava_llama, qwen2_5_vl,
            qwen2_vl; flat or text_config) and names every key that took its config class's default.
            With a folder, also reads every safetensors file (validating headers, dtypes, ranges and
            overlaps), recognises the checkpoint layout (llava-hf, llava-hf-modules, llava-original,
            qwen2.5-vl, qwen2.5-vl-modules, causal-lm), checks each tensor the decoder reads against
            the config, and names what it skips: the vision tower, and any tensor it does not
            recognise. Exit 0 if it loads, 2 with a message naming the file and tensor if not.
            """))

    @Argument(help: "A Hugging Face model folder (config.json + model.safetensors or shards), or a config.json file.")
    var path: String

    @Flag(help: "List every tensor with dtype, shape and what the decoder does with it.")
    var tensors = false

    @Flag(help: "Machine-readable JSON on standard output (reroute.inspect v1), with every tensor.")
    var json = false

    struct Tensor: Encodable { var name: String, dtype: String, shape: [Int], role: String }
    struct Default: Encodable { var key: String, value: String }
    struct Skipped: Encodable { var prefix: String, tensors: Int }
    struct Report: Encodable {
        var schema = "reroute.inspect", schemaVersion = 1
        var directory: String
        var configFile: String
        var modelType: String
        @Nullable var architecture: String?
        var configClass: String
        var textKeys: String
        var defaulted: [Default]
        var config: ModelConfig
        var headDim: Int
        @Nullable var layout: String?
        @Nullable var projector: [String: Int]?
        @Nullable var projectorKind: String?
        var skipped: [Skipped]
        var unrecognised: [String]
        var files: [String]
        var tensors: [Tensor]
    }

    func run() throws {
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        let configOnly = exists && !isDir.boolValue
        let dir = URL(fileURLWithPath: path)
        let configURL = configOnly ? dir : dir.appendingPathComponent("config.json")
        let reading = try ModelConfig.reading(from: configURL)
        let config = reading.config
        var report = Report(directory: configOnly ? "" : path, configFile: configURL.path, modelType: reading.modelType,
                            architecture: reading.architecture, configClass: reading.defaults.configClass, textKeys: reading.textKeys,
                            defaulted: reading.defaulted.map { Default(key: $0.key, value: $0.value) }, config: config,
                            headDim: config.headDim, layout: nil, projector: nil, projectorKind: nil, skipped: [], unrecognised: [],
                            files: [], tensors: [])
        var layoutLine = "none (config only)"
        var projectorLine = "none"
        if !configOnly {
            let ckpt = try Checkpoint(directory: dir)
            let weights = try ModelWeights.load(config: config, checkpoint: ckpt)
            let layout = try ckpt.layout()
            layoutLine = "\(layout.name) (\(layout.writtenBy))"
            report.layout = layout.name
            report.projector = weights.projector.map { ["vision_dim": $0.visionDim, "projector_hidden": $0.linear1.rows, "hidden": config.hiddenSize] }
            report.projectorKind = weights.projector.map { $0.featureNorm == nil ? "llava" : "qwen2.5-vl-merger" }
            projectorLine = weights.projector?.summary ?? "none"
            report.files = ckpt.files.map { URL(fileURLWithPath: $0.path).lastPathComponent }
            report.tensors = try ckpt.tensorNames.map { n in
                let t = try ckpt.info(n)
                return Tensor(name: n, dtype: t.dtype.rawValue, shape: t.shape, role: layout.role(of: n).rawValue)
            }
            report.skipped = layout.visionTower.compactMap { prefix in
                let n = report.tensors.filter { $0.name.hasPrefix(prefix) && layout.role(of: $0.name) == .visionTower }.count
                return n > 0 ? Skipped(prefix: prefix, tensors: n) : nil
            }
            report.unrecognised = report.tensors.filter { $0.role == CheckpointLayout.Role.unrecognised.rawValue }.map(\.name)
        }
        if json { return print(try ReportJSON.encode(report)) }
        let defaulted = reading.defaulted.isEmpty ? "none"
            : reading.defaulted.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
        print("""
            config            \(configURL.path): model_type \(reading.modelType)\(reading.architecture.map { ", \($0)" } ?? ""); text model from \(reading.textKeys)
            defaults taken    \(defaulted) (\(reading.defaults.configClass) defaults)
            family            \(config.family.rawValue)
            layers            \(config.layers)
            hidden            \(config.hiddenSize)
            heads / kv heads  \(config.heads) / \(config.kvHeads) (head dim \(config.headDim))
            intermediate      \(config.intermediateSize)
            vocab             \(config.vocabSize)
            rms_norm_eps      \(config.rmsNormEps)
            rope_theta        \(config.ropeTheta)\(config.mropeSection.map { " (M-RoPE sections \($0))" } ?? "")
            tied embeddings   \(config.tieWordEmbeddings)
            attention bias    \(config.attentionBias)
            layout            \(layoutLine)
            """)
        guard !configOnly else { return }
        print("""
            projector         \(projectorLine)
            skipped           \(report.skipped.isEmpty ? "none" : report.skipped.map { "\($0.tensors) vision-tower tensors under \($0.prefix)" }.joined(separator: ", "))
            unrecognised      \(report.unrecognised.isEmpty ? "none" : "\(report.unrecognised.count) (not read): " + report.unrecognised.prefix(5).joined(separator: ", ") + (report.unrecognised.count > 5 ? ", …" : ""))
            files             \(report.files.joined(separator: ", "))
            tensors           \(report.tensors.count)
            """)
        if tensors {
            for t in report.tensors { print("  \(t.name)  \(t.dtype)  \(t.shape)  \(t.role)") }
        }
    }
}
