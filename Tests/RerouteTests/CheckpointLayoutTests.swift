import Foundation
import Testing
@testable import RerouteModel

/// The same tensors under every published naming convention, and the same config in every
/// form transformers accepts, load to the same weights (SPEC.md §3.1, §3.2).
@Suite struct CheckpointLayoutTests {
    /// Every tensor of a shipped model widened to f32, under its shipped name.
    static func tensors(_ model: String) throws -> [(name: String, shape: [Int], values: [Float])] {
        let ckpt = try Checkpoint(directory: Repo.model(model))
        return try ckpt.tensorNames.map { n in (n, try ckpt.info(n).shape, try ckpt.floats(n, shape: try ckpt.info(n).shape)) }
    }

    /// A model folder with `config`, and the tensors renamed by `rename` (nil: left out)
    /// into `model.safetensors`, plus those `projectorFile` picks into `mm_projector.safetensors`.
    static func folder(_ dir: TempDir, config: Any, tensors: [(name: String, shape: [Int], values: [Float])],
                       rename: (String) -> String?, projectorFile: (String) -> Bool = { _ in false }) throws -> URL {
        var main = SafeTensorsBuilder(), projector = SafeTensorsBuilder()
        for t in tensors {
            guard let n = rename(t.name) else { continue }
            if projectorFile(n) { projector.addF32(n, shape: t.shape, t.values) } else { main.addF32(n, shape: t.shape, t.values) }
        }
        try main.bytes().write(to: dir.path("model.safetensors"))
        if !projector.entries.isEmpty { try projector.bytes().write(to: dir.path("mm_projector.safetensors")) }
        try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: dir.url.appendingPathComponent("config.json"))
        return dir.url
    }

    static func expectSameWeights(_ a: ModelWeights, _ b: ModelWeights, _ what: String) {
        #expect(a.config == b.config, "\(what): config")
        #expect(a.embedding.values == b.embedding.values && a.lmHead.values == b.lmHead.values && a.finalNorm == b.finalNorm, "\(what)")
        for (l, (x, y)) in zip(a.layers, b.layers).enumerated() {
            let same = x.inputNorm == y.inputNorm && x.postNorm == y.postNorm && x.q.values == y.q.values && x.k.values == y.k.values
                && x.v.values == y.v.values && x.o.values == y.o.values && x.gate.values == y.gate.values && x.up.values == y.up.values
                && x.down.values == y.down.values && x.qBias == y.qBias && x.kBias == y.kBias && x.vBias == y.vBias
            #expect(same, "\(what): layer \(l)")
        }
        #expect((a.projector == nil) == (b.projector == nil), "\(what): projector presence")
        if let p = a.projector, let q = b.projector {
            #expect(p.linear1.values == q.linear1.values && p.linear2.values == q.linear2.values && p.bias1 == q.bias1
                    && p.bias2 == q.bias2 && p.featureNorm == q.featureNorm, "\(what): projector")
        }
    }

    static func json(_ model: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: Repo.model(model).appendingPathComponent("config.json"))) as! [String: Any]
    }

    /// tiny-llama is written in the llava-hf layout (save_pretrained); the same tensors under
    /// transformers 5's module names, original LLaVA's names (with a flat llava_llama config)
    /// and a causal LM with mm_projector.safetensors load identically, and each is recognised.
    @Test func llavaLayoutsLoadTheSameWeights() throws {
        let shipped = try ModelWeights.load(directory: Repo.model("tiny-llama"))
        #expect(try Checkpoint(directory: Repo.model("tiny-llama")).layout() == .llavaHF)
        let tensors = try Self.tensors("tiny-llama")
        let outer = try Self.json("tiny-llama")
        var flat = outer["text_config"] as! [String: Any]
        flat["model_type"] = "llava_llama"
        flat["mm_hidden_size"] = 48
        flat["mm_projector_type"] = "mlp2x_gelu"
        var causal = outer["text_config"] as! [String: Any]
        causal["model_type"] = "llama"
        func swap(_ n: String, _ pairs: [(String, String)]) -> String? {
            for (from, to) in pairs where n.hasPrefix(from) { return to + n.dropFirst(from.count) }
            return nil
        }
        let cases: [(CheckpointLayout, Any, (String) -> String?, (String) -> Bool)] = [
            (.llavaHFModules, outer, { swap($0, [("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."),
                                               ("multi_modal_projector.", "model.multi_modal_projector."), ("vision_tower.", "model.vision_tower.")]) }, { _ in false }),
            (.llavaOriginal, flat, { swap($0, [("language_model.model.", "model."), ("language_model.lm_head.", "lm_head."),
                                             ("multi_modal_projector.linear_1.", "model.mm_projector.0."),
                                             ("multi_modal_projector.linear_2.", "model.mm_projector.2."),
                                             ("vision_tower.", "model.vision_tower.vision_tower.")]) }, { _ in false }),
            (.causalLM, causal, { swap($0, [("language_model.model.", "model."), ("language_model.lm_head.", "lm_head."),
                                          ("multi_modal_projector.", "multi_modal_projector.")]) }, { $0.hasPrefix("multi_modal_projector.") }),
        ]
        for (layout, config, rename, toProjectorFile) in cases {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let url = try Self.folder(dir, config: config, tensors: tensors, rename: rename, projectorFile: toProjectorFile)
            let ckpt = try Checkpoint(directory: url)
            #expect(try ckpt.layout() == layout, "\(layout.name)")
            Self.expectSameWeights(shipped, try ModelWeights.load(directory: url), layout.name)
            // Every vision-tower tensor is recognised as such; nothing is unrecognised.
            #expect(ckpt.tensorNames.allSatisfy { layout.role(of: $0) != .unrecognised }, "\(layout.name)")
            #expect(ckpt.tensorNames.filter { layout.role(of: $0) == .visionTower }.count == (layout == .causalLM ? 0 : 23), "\(layout.name)")
        }
    }

    /// tiny-qwen2-vl is written by save_pretrained (model.*, visual.*, text_config); under
    /// transformers 5's module names and with the published flat config (rope_scaling
    /// type mrope, as Qwen2.5-VL-7B-Instruct's) it loads identically, merger included.
    @Test func qwenLayoutsAndConfigFormsLoadTheSameWeights() throws {
        let shipped = try ModelWeights.load(directory: Repo.model("tiny-qwen2-vl"))
        #expect(try Checkpoint(directory: Repo.model("tiny-qwen2-vl")).layout() == .qwenVL)
        #expect(shipped.projector?.featureNorm?.count == 8 && shipped.projector?.visionDim == 32)
        let tensors = try Self.tensors("tiny-qwen2-vl")
        let outer = try Self.json("tiny-qwen2-vl")
        var flat = outer
        let text = outer["text_config"] as! [String: Any]
        flat.removeValue(forKey: "text_config")
        for (k, v) in text where k != "model_type" && k != "rope_parameters" { flat[k] = v }
        let rope = text["rope_parameters"] as! [String: Any]
        flat["rope_theta"] = rope["rope_theta"]
        flat["rope_scaling"] = ["type": "mrope", "mrope_section": rope["mrope_section"]!]
        let modules: (String) -> String? = { n in
            n.hasPrefix("visual.") ? "model." + n : n.hasPrefix("model.") ? "model.language_model." + n.dropFirst("model.".count) : n
        }
        for (layout, config, rename) in [(CheckpointLayout.qwenVLModules, outer as Any, modules), (.qwenVL, flat, { $0 }), (.qwenVLModules, flat, modules)] {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let url = try Self.folder(dir, config: config, tensors: tensors, rename: rename)
            let ckpt = try Checkpoint(directory: url)
            #expect(try ckpt.layout() == layout)
            Self.expectSameWeights(shipped, try ModelWeights.load(directory: url), "\(layout.name), \(config as? [String: Any] == nil ? "" : "config")")
            #expect(ckpt.tensorNames.allSatisfy { layout.role(of: $0) != .unrecognised })
        }
    }

    /// A folder of PyTorch pickles only is refused by name, with what to do.
    @Test func pickleOnlyFoldersAreRefusedByName() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        try Data([0x80, 0x02]).write(to: dir.url.appendingPathComponent("pytorch_model-00001-of-00002.bin"))
        let e = inputError { _ = try Checkpoint(directory: dir.url) }
        #expect(e?.kind == .unsupportedModel && e?.object == "pytorch_model-00001-of-00002.bin" && e?.detail.contains("safetensors") == true,
                "\(String(describing: e))")
    }

    /// Keys missing from config.json take transformers 5.24's class defaults (SPEC.md §3.1),
    /// and the reading names each.
    @Test func missingKeysTakeTheConfigClassDefaults() throws {
        let llava = try ModelConfig.read(json: Data(#"{"model_type": "llava", "text_config": {"vocab_size": 32064}}"#.utf8), file: "c.json")
        #expect(llava.config.hiddenSize == 4096 && llava.config.layers == 32 && llava.config.heads == 32 && llava.config.kvHeads == 32
                && llava.config.intermediateSize == 11008 && llava.config.rmsNormEps == 1e-6 && llava.config.ropeTheta == 10000
                && llava.config.maxPositionEmbeddings == 2048 && llava.config.vocabSize == 32064 && !llava.config.tieWordEmbeddings)
        #expect(llava.defaults.configClass == "LlamaConfig" && llava.textKeys == "text_config")
        #expect(llava.defaulted.map(\.key).contains("text_config.hidden_size") && !llava.defaulted.map(\.key).contains("text_config.vocab_size"))
        let qwen = try ModelConfig.read(json: Data(#"{"model_type": "qwen2_5_vl", "hidden_size": 2048, "num_attention_heads": 16}"#.utf8), file: "c.json")
        #expect(qwen.config.family == .qwen2 && qwen.config.kvHeads == 8 && qwen.config.layers == 80 && qwen.config.rmsNormEps == 1e-5
                && qwen.config.ropeTheta == 1e6 && qwen.config.vocabSize == 152064 && qwen.config.mropeSection == [16, 24, 24]
                && qwen.config.maxPositionEmbeddings == 32768 && qwen.textKeys == "top level")
        // Qwen2Config's num_key_value_heads is 32 whatever H is: with H = 4 that cannot be.
        let e = inputError { _ = try ModelConfig.parse(json: Data(#"{"model_type": "qwen2", "num_attention_heads": 4, "hidden_size": 64}"#.utf8), file: "c.json") }
        #expect(e?.object == "num_key_value_heads", "\(String(describing: e))")
        #expect(try ModelConfig.parse(json: Data(#"{"model_type": "qwen2"}"#.utf8), file: "c.json").kvHeads == 32)
    }
}
