import Foundation
import RerouteFixtures
import RerouteModel
import RerouteReference
import RerouteVerify
import Testing

/// The reference decoder reproduces Hugging Face transformers on every shipped case:
/// hidden states entering every layer and logits within the tolerances of SPEC.md §7,
/// greedy tokens exactly.
@Suite struct TransformersParityTests {
    static let decoders: [String: ReferenceDecoder] = {
        var d: [String: ReferenceDecoder] = [:]
        for name in ["tiny-llama", "tiny-qwen2", "tiny-qwen2-vl"] {
            if let w = try? ModelWeights.load(directory: Repo.model(name)) { d[name] = ReferenceDecoder(weights: w) }
        }
        return d
    }()

    @Test func everyModelShipsCases() {
        #expect(Repo.caseFiles.count >= 4)
        #expect(Set(Repo.caseFiles.map { $0.split(separator: "/")[0] }) == ["tiny-llama", "tiny-qwen2", "tiny-qwen2-vl"])
    }

    @Test(arguments: Repo.caseFiles)
    func matchesTransformers(caseFile: String) throws {
        let model = String(caseFile.split(separator: "/")[0])
        let decoder = try #require(Self.decoders[model])
        let reference = try HFReferenceCase.load(path: Repo.models.appendingPathComponent(caseFile).path)
        #expect(reference.runs.map(\.name) == ["float64", "float32"])
        #expect(reference.runs[0].hiddenStates?.count == decoder.config.layers + 1)
        let check = try TransformersCheck.run(decoder: decoder, model: model, reference: reference)
        for t in check.tensors where !t.passed {
            Issue.record("\(t.name): \(t.gateFailure ?? "") NMSE \(t.nmse), worst \(t.worstRatio), first \(t.mismatches.first.map { "\($0)" } ?? "-")")
        }
        for e in check.exact { #expect(e.expected == e.actual, "\(e.name)") }
        // Per run: logits, step logits; float64 also L+1 hidden states and L attention rows.
        #expect(check.tensors.count == 2 * 2 + decoder.config.layers + 1 + decoder.config.layers)
    }

    /// The float64 tolerance is tight enough to see a 10x change of ε in RMSNorm or a
    /// position shifted by one: the check can fail.
    @Test func comparisonDetectsSmallModelChanges() throws {
        let reference = try HFReferenceCase.load(path: Repo.models.appendingPathComponent("tiny-llama/cases/features-12x12-contiguous.h5").path)
        var weights = try ModelWeights.load(directory: Repo.model("tiny-llama"))
        weights.config.rmsNormEps *= 10
        let epsCheck = try TransformersCheck.run(decoder: ReferenceDecoder(weights: weights), model: "tiny-llama", reference: reference)
        #expect(!epsCheck.passed)
        #expect(epsCheck.tensors.first { $0.name == "float64/hidden[0]" }?.passed == true)  // the input is unchanged
        #expect(epsCheck.tensors.first { $0.name == "float64/hidden[1]" }?.passed == false)

        // The last text token one position later: relative positions change for it alone.
        var shifted = reference
        var ids = reference.promptCase.positions.linear
        ids[ids.count - 1] += 1
        shifted.promptCase.positions = PositionIDs(ids)
        let posCheck = try TransformersCheck.run(decoder: try #require(Self.decoders["tiny-llama"]), model: "tiny-llama", reference: shifted)
        #expect(!posCheck.passed)
        #expect(posCheck.tensors.first { $0.name == "float64/hidden[1]" }?.passed == false)
    }
}

/// The decoder executes per-layer plans: bypassed rows are untouched, caches hold exactly
/// the processed tokens, and the decode position is independent of the cache length.
@Suite struct ReferenceDecoderTests {
    let weights = tinyRandomWeights(layers: 3)

    func makeCase(positions: PositionIDs? = nil) -> PromptCase {
        var rng = SplitMix64(seed: 7)
        let emb = Matrix(rows: 6, cols: 16, values: (0..<96).map { _ in rng.nextSigned() })
        return PromptCase(name: "t", prefixTokens: [1, 2], suffixTokens: [3, 4, 5], visual: .embeddings(emb),
                          grid: ImageGrid(rows: 2, cols: 3), positions: positions, decodeSteps: 3)
    }

    @Test func densePlanCachesEveryTokenAtEveryLayer() throws {
        let c = makeCase()
        try c.validate(for: weights.config, projector: nil, file: "test")
        let d = ReferenceDecoder(weights: weights)
        let p = d.prefill(c, plan: .dense(layers: 3, case: c))
        #expect(p.hiddenStates.count == 4)
        #expect(p.caches.map(\.count) == [11, 11, 11])
        #expect(p.caches[0].positions.map { $0[0] } == Array(0..<11))
        let g = d.greedyDecode(after: p, steps: 3, sequenceLength: 11)
        #expect(g.tokens.count == 3 && g.stepLogits.count == 3)
        #expect(g.caches.map(\.count) == [13, 13, 13])  // 2 fed tokens
        #expect(g.caches[2].positions.suffix(2).map { $0[0] } == [11, 12])
        #expect(g.caches[2].tokens.suffix(2) == [11, 12])
    }

    @Test func bypassedRowsAreBitIdenticalAndUncached() throws {
        let c = makeCase()
        let d = ReferenceDecoder(weights: weights)
        var plan = ExecutionPlan.dense(layers: 3, case: c)
        // Layer 1 skips visual tokens 3 and 5 (sequence indices 3, 5).
        let active = [0, 1, 2, 4, 6, 7, 8, 9, 10]
        plan.layers[1] = LayerPlan(active: active, positions: c.positions.gathering(active), decodePosition: 11)
        let p = d.prefill(c, plan: plan)
        #expect(p.hiddenStates[2][3] == p.hiddenStates[1][3])
        #expect(p.hiddenStates[2][5] == p.hiddenStates[1][5])
        #expect(p.hiddenStates[2][4] != p.hiddenStates[1][4])
        #expect(p.caches[1].tokens == active && p.caches[1].count == 9)
        #expect(p.caches[0].count == 11 && p.caches[2].count == 11)
        // Skipping tokens changes everything after them at that layer, nothing before.
        let dense = d.prefill(c, plan: .dense(layers: 3, case: c))
        #expect(p.hiddenStates[2][2] == dense.hiddenStates[2][2])
        #expect(p.hiddenStates[2][10] != dense.hiddenStates[2][10])
    }

    @Test func decodePositionIsNotTheCacheLength() throws {
        let gapped = PositionIDs([0, 1, 5, 6, 9, 12, 13, 20, 21, 22, 23])
        let c = makeCase(positions: gapped)
        let d = ReferenceDecoder(weights: weights)
        let p = d.prefill(c, plan: .dense(layers: 3, case: c))
        #expect(p.plan.layers[0].decodePosition == 24)
        let g = d.greedyDecode(after: p, steps: 3, sequenceLength: 11)
        #expect(g.caches[0].positions.suffix(2).map { $0[0] } == [24, 25])
        #expect(g.caches[0].count == 13)
    }

    @Test func promptCaseValidation() {
        let c = makeCase()
        var bad = c
        bad.grid = ImageGrid(rows: 3, cols: 3)
        #expect(inputError { try bad.validate(for: weights.config, projector: nil, file: "f.h5") }?.object == "grid")
        bad = c
        bad.prefixTokens = [999]
        bad.positions = .contiguous(10)
        #expect(inputError { try bad.validate(for: weights.config, projector: nil, file: "f.h5") }?.object == "prefix_ids")
        bad = c
        bad.positions = .contiguous(5)
        #expect(inputError { try bad.validate(for: weights.config, projector: nil, file: "f.h5") }?.object == "positions")
        bad = c
        bad.visual = .embeddings(Matrix(rows: 6, cols: 16, values: [Float](repeating: .nan, count: 96)))
        #expect(inputError { try bad.validate(for: weights.config, projector: nil, file: "f.h5") }?.kind == .badValue)
        bad = c
        bad.visual = .features(Matrix(rows: 6, cols: 4, values: [Float](repeating: 0, count: 24)))
        #expect(inputError { try bad.validate(for: weights.config, projector: nil, file: "f.h5") }?.object == "visual_features")
    }

    static let mropeCase = "tiny-qwen2-vl/cases/features-6x8-mrope.h5"

    /// The 3-D positions transformers' `get_rope_index` wrote equal the closed form the suite
    /// uses for its own cases (SPEC.md §4).
    @Test func multimodalPositionsMatchTransformers() throws {
        for file in Repo.caseFiles where file.hasPrefix("tiny-qwen2-vl/") {
            let c = try HFReferenceCase.load(path: Repo.models.appendingPathComponent(file).path).promptCase
            #expect(c.positions.isMultimodal)
            #expect(c.positions == .multimodal(prefix: c.prefixTokens.count, grid: c.grid, suffix: c.suffixTokens.count), "\(file)")
        }
    }

    /// M-RoPE is checked frequency by frequency: swapping the h and w axes, or reading one
    /// axis for all frequencies, breaks the match (the tiny model's θ = 100 makes every chunk count).
    @Test func comparisonDetectsMRoPEMistakes() throws {
        let reference = try HFReferenceCase.load(path: Repo.models.appendingPathComponent(Self.mropeCase).path)
        let decoder = try #require(TransformersParityTests.decoders["tiny-qwen2-vl"])
        #expect(decoder.config.mropeSection == [2, 3, 3])
        #expect(try TransformersCheck.run(decoder: decoder, model: "tiny-qwen2-vl", reference: reference).passed)
        var swapped = reference
        let a = reference.promptCase.positions.axes
        swapped.promptCase.positions = PositionIDs(axes: [a[0], a[2], a[1]])
        #expect(try !TransformersCheck.run(decoder: decoder, model: "tiny-qwen2-vl", reference: swapped).passed)
        var flat = try ModelWeights.load(directory: Repo.model("tiny-qwen2-vl"))
        flat.config.mropeSection = [8, 0, 0]  // every frequency reads t
        #expect(try !TransformersCheck.run(decoder: ReferenceDecoder(weights: flat), model: "tiny-qwen2-vl", reference: reference).passed)
        // 3-D positions on a 1-D RoPE model are refused, naming the object.
        flat.config.mropeSection = nil
        #expect(throws: InputError.self) {
            try reference.promptCase.validate(for: flat.config, projector: flat.projector, file: Self.mropeCase)
        }
    }
}
