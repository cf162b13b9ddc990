import ArgumentParser
import Foundation
import RerouteModel
import RerouteVerify

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Validate a model folder and print its configuration and tensors.",
        discussion: """
            Reads config.json and every safetensors file (validating headers, dtypes, ranges and
            overlaps), checks each tensor's shape against the config, and prints a summary.
            Exit 0 if the folder loads, 2 with a message naming the file and tensor if not.
            """)

    @Argument(help: "A Hugging Face model folder (config.json + model.safetensors or shards).")
    var directory: String

    @Flag(help: "List every tensor with dtype and shape.")
    var tensors = false

    @Flag(help: "Machine-readable JSON on standard output (reroute.inspect v1), with every tensor.")
    var json = false

    func run() throws {
        let dir = URL(fileURLWithPath: directory)
        let config = try ModelConfig.load(from: dir.appendingPathComponent("config.json"))
        let ckpt = try Checkpoint(directory: dir)
        let weights = try ModelWeights.load(config: config, checkpoint: ckpt)
        if json {
            struct Tensor: Encodable { var name: String, dtype: String, shape: [Int] }
            struct Report: Encodable {
                var schema = "reroute.inspect", schemaVersion = 1, directory: String, config: ModelConfig, headDim: Int
                @Nullable var projector: [String: Int]?
                var files: [String], tensors: [Tensor]
            }
            let list = try ckpt.tensorNames.map { n in let t = try ckpt.info(n); return Tensor(name: n, dtype: t.dtype.rawValue, shape: t.shape) }
            return print(try ReportJSON.encode(Report(directory: directory, config: config, headDim: config.headDim,
                                                      projector: weights.projector.map { ["vision_dim": $0.visionDim, "hidden": config.hiddenSize] },
                                                      files: ckpt.files.map { URL(fileURLWithPath: $0.path).lastPathComponent }, tensors: list)))
        }
        print("""
            family            \(config.family.rawValue)
            layers            \(config.layers)
            hidden            \(config.hiddenSize)
            heads / kv heads  \(config.heads) / \(config.kvHeads) (head dim \(config.headDim))
            intermediate      \(config.intermediateSize)
            vocab             \(config.vocabSize)
            rms_norm_eps      \(config.rmsNormEps)
            rope_theta        \(config.ropeTheta)
            tied embeddings   \(config.tieWordEmbeddings)
            attention bias    \(config.attentionBias)
            projector         \(weights.projector.map { "linear \($0.visionDim) -> \(config.hiddenSize), GELU, linear" } ?? "none")
            files             \(ckpt.files.map { URL(fileURLWithPath: $0.path).lastPathComponent }.joined(separator: ", "))
            tensors           \(ckpt.tensorNames.count)
            """)
        if tensors {
            for name in ckpt.tensorNames {
                let t = try ckpt.info(name)
                print("  \(name)  \(t.dtype.rawValue)  \(t.shape)")
            }
        }
    }
}
