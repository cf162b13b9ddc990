import Foundation
import RerouteModel
import Testing

/// Model folders: config parsing, sharding, and shape checks against the config.
@Suite struct CheckpointTests {
    /// A copy of a shipped model folder to damage.
    func copyOfModel(_ name: String) throws -> TempDir {
        let dir = try TempDir()
        for f in try FileManager.default.contentsOfDirectory(atPath: Repo.model(name).path) where f != "cases" {
            try FileManager.default.copyItem(at: Repo.model(name).appendingPathComponent(f), to: dir.url.appendingPathComponent(f))
        }
        return dir
    }

    @Test func loadsShippedModels() throws {
        let llama = try ModelWeights.load(directory: Repo.model("tiny-llama"))
        #expect(llama.config.family == .llama && llama.config.layers == 8 && llama.config.kvHeads == 4)
        #expect(llama.layers[0].qBias == nil && !llama.config.tieWordEmbeddings)
        #expect(llama.projector?.visionDim == 48)
        let qwen = try ModelWeights.load(directory: Repo.model("tiny-qwen2"))
        #expect(qwen.config.family == .qwen2 && qwen.config.kvHeads == 2 && qwen.config.tieWordEmbeddings)
        #expect(qwen.layers[7].kBias?.count == qwen.config.kvWidth)
        #expect(qwen.lmHead == qwen.embedding)
        #expect(qwen.config.ropeTheta == 1_000_000)
    }

    @Test func missingTensorIsNamed() throws {
        let dir = try copyOfModel("tiny-llama")
        defer { dir.cleanup() }
        // Rewrite the checkpoint without one tensor.
        let file = try SafeTensorsFile(path: dir.path("model.safetensors"))
        var b = SafeTensorsBuilder()
        for name in file.tensors.keys.sorted() where name != "language_model.model.layers.3.mlp.up_proj.weight" {
            b.addF32(name, shape: try file.info(name).shape, try file.floats(name))
        }
        try b.bytes().write(to: dir.path("model.safetensors"))
        let e = inputError { _ = try ModelWeights.load(directory: dir.url) }
        #expect(e?.kind == .missingTensor && e?.object == "language_model.model.layers.3.mlp.up_proj.weight")
    }

    @Test func wrongShapeForConfigIsNamed() throws {
        let dir = try copyOfModel("tiny-llama")
        defer { dir.cleanup() }
        // Claim a wider intermediate size than the tensors have.
        var config = try String(contentsOfFile: dir.path("config.json"), encoding: .utf8)
        config = config.replacingOccurrences(of: "\"intermediate_size\": 172", with: "\"intermediate_size\": 170")
        try config.write(toFile: dir.path("config.json"), atomically: true, encoding: .utf8)
        let e = inputError { _ = try ModelWeights.load(directory: dir.url) }
        #expect(e?.kind == .shapeMismatch && e?.object == "language_model.model.layers.0.mlp.gate_proj.weight")
        #expect(e?.file.hasSuffix("model.safetensors") == true)
    }

    @Test func tensorOutOfRangeInShippedFile() throws {
        let dir = try copyOfModel("tiny-llama")
        defer { dir.cleanup() }
        var bytes = [UInt8](try Data(contentsOf: dir.url.appendingPathComponent("model.safetensors")))
        bytes.removeLast(64)  // the last tensor now runs past the end
        try bytes.write(to: dir.path("model.safetensors"))
        let e = inputError { _ = try ModelWeights.load(directory: dir.url) }
        #expect(e?.kind == .outOfRange)
        #expect(e?.object != nil)
    }

    @Test func shardIndexMustMatchShards() throws {
        let dir = try copyOfModel("tiny-qwen2")
        defer { dir.cleanup() }
        let indexPath = dir.path("model.safetensors.index.json")
        let index = try String(contentsOfFile: indexPath, encoding: .utf8)
        // Point one tensor at the wrong shard.
        let moved = index.replacingOccurrences(of: "\"model.language_model.norm.weight\": \"model-00002-of-00002.safetensors\"",
                                               with: "\"model.language_model.norm.weight\": \"model-00001-of-00002.safetensors\"")
        try #require(moved != index)
        try moved.write(toFile: indexPath, atomically: true, encoding: .utf8)
        let e = inputError { _ = try Checkpoint(directory: dir.url) }
        #expect(e?.kind == .missingTensor && e?.object == "model.language_model.norm.weight")
        // A path outside the folder is refused.
        try index.replacingOccurrences(of: "\"model-00001-of-00002.safetensors\"", with: "\"../x.safetensors\"")
            .write(toFile: indexPath, atomically: true, encoding: .utf8)
        #expect(inputError { _ = try Checkpoint(directory: dir.url) }?.kind == .badJSON)
    }

    @Test func missingShardIsReported() throws {
        let dir = try copyOfModel("tiny-qwen2")
        defer { dir.cleanup() }
        try FileManager.default.removeItem(atPath: dir.path("model-00002-of-00002.safetensors"))
        let e = inputError { _ = try Checkpoint(directory: dir.url) }
        #expect(e?.kind == .fileNotFound && e?.file.hasSuffix("model-00002-of-00002.safetensors") == true)
    }

    @Test func emptyFolderIsReported() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        #expect(inputError { _ = try Checkpoint(directory: dir.url) }?.kind == .fileNotFound)
        #expect(inputError { _ = try ModelWeights.load(directory: dir.url) }?.kind == .fileNotFound)
    }
}

@Suite struct ModelConfigTests {
    func parse(_ json: String) throws -> ModelConfig { try ModelConfig.parse(json: Data(json.utf8), file: "config.json") }

    @Test func llavaNestsTheLanguageModel() throws {
        // LLaVA-1.5-7B's shape, as its HF config gives it.
        let c = try parse("""
            {"model_type": "llava", "text_config": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
             "num_attention_heads": 32, "intermediate_size": 11008, "vocab_size": 32064, "rms_norm_eps": 1e-5}}
            """)
        #expect(c.family == .llama && c.kvHeads == 32 && c.headDim == 128 && c.ropeTheta == 10000 && !c.attentionBias)
    }

    @Test func qwenHasBiasAndGQA() throws {
        let c = try parse("""
            {"model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
             "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064, "rope_theta": 1000000.0}
            """)
        #expect(c.attentionBias && c.groupSize == 7 && c.kvWidth == 512 && c.ropeTheta == 1e6)
    }

    @Test func ropeParametersOfTransformers5() throws {
        let c = try parse("""
            {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 8, "vocab_size": 10, "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}}
            """)
        #expect(c.ropeTheta == 500000)
    }

    @Test(arguments: [
        ("{\"model_type\": \"llama\", \"hidden_size\": 0}", InputError.Kind.badConfig, "hidden_size"),
        ("{\"model_type\": \"llava\", \"text_config\": {\"model_type\": \"mistral\"}}", .unsupportedModel, "text_config.model_type"),
        ("{\"model_type\": \"llava\", \"text_config\": [1]}", .badConfig, "text_config"),
        ("{\"model_type\": \"qwen2_5_vl\", \"text_config\": {\"model_type\": \"llama\"}}", .unsupportedModel, "text_config.model_type"),
        ("{\"model_type\": \"llava\", \"text_config\": {\"hidden_act\": \"gelu\"}}", .badConfig, "text_config.hidden_act"),
        ("{\"model_type\": \"gpt2\"}", .unsupportedModel, "model_type"),
        ("{\"hidden_size\": 4}", .badConfig, "model_type"),
        ("not json", .badJSON, ""),
        ("{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 3, \"intermediate_size\": 8, \"vocab_size\": 10}", .badConfig, "num_key_value_heads"),
        ("{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 8, \"vocab_size\": 10, \"hidden_act\": \"gelu\"}", .badConfig, "hidden_act"),
        ("{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 8, \"vocab_size\": 10, \"rope_scaling\": {\"rope_type\": \"yarn\"}}", .badConfig, "rope_scaling"),
        ("{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 8, \"vocab_size\": 1e15}", .badConfig, "vocab_size"),
        ("{\"model_type\": \"llama\", \"hidden_size\": 64, \"num_hidden_layers\": -2, \"num_attention_heads\": 4, \"intermediate_size\": 8, \"vocab_size\": 10}", .badConfig, "num_hidden_layers"),
    ])
    func badConfigsNameTheKey(json: String, kind: InputError.Kind, key: String) {
        let e = inputError { _ = try parse(json) }
        #expect(e?.kind == kind)
        #expect((e?.object ?? "") == key)
        #expect(e?.file == "config.json")
    }
}
