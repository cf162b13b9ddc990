import Foundation
import RerouteFast
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteVerify
import Testing

/// DART as published (SPEC.md §8.15) and the probes it reads: the previous layer's keys and
/// the final norm.
@Suite struct DARTTests {
    /// Worked by hand at layer 1: 6 candidates, one text token before the image, two after;
    /// k = 5. Key L1 norms 5, 1, 4, 3, 2, 6 make c5, c0, c2, c3 the image pivots (kept); the
    /// text token before the image has the largest key but is not a text pivot. The final norm
    /// here scales the first coordinate by 10. The 1 token left goes to the first pivot in
    /// sequence order, c0: of the pool {c1, c4}, c4 = (0, 1) is the least similar to
    /// c0 = (10, 1) (cos 1/√101; c1 = (10, −0.2) has cos 0.993). Taken in L1 order (c5 first),
    /// without the final norm, with the text before the image as a pivot, or with pivots by the
    /// hidden states' L1 norms, c1 would be kept instead.
    @Test func dartByHand() throws {
        let keys: [[Double]] = [[5, 0], [0, 1], [0, -4], [3, 0], [-2, 0], [0, 6]]
        let states: [[Double]] = [[1, 1], [1, -0.2], [-1, 0], [0, -1], [0, 1], [0, 1]]
        let textKeys: [[Double]] = [[100, 100], [1, 0], [0, 1]]
        let textStates: [[Double]] = [[0, 1], [0.1, 0], [0.1, 0.1]]
        let norm: ([[Double]]) -> [[Double]] = { $0.map { [10 * $0[0], $0[1]] } }
        let input = SelectionInput(layer: 1, stage: 0, budget: 5, candidates: Array(0..<6), grid: ImageGrid(rows: 2, cols: 3),
                                   gridCells: Array(0..<6), attentionScores: { Issue.record("read attention"); return [] },
                                   hiddenStates: { states }, prefixCount: 1, textHiddenStates: { textStates },
                                   previousLayerKeys: { (keys, textKeys) }, finalNorm: norm)
        let s = try RoutingPolicy.dart(tier: .t64).select(input)
        #expect(s.kept == [0, 2, 3, 4, 5])
        // c1, not kept: minus its largest cosine to a pivot, the text token (1, 0) after the image.
        let expected = [2, -10 / 100.04.squareRoot(), 2, 2, -1 / 101.0.squareRoot(), 2]
        for (j, e) in expected.enumerated() { #expect(abs(s.scores[j] - e) < 1e-12, "candidate \(j): \(s.scores[j]) vs \(e)") }
        #expect(RoutingPolicy.dart(tier: .t64).selection?.summary.contains("as published") == true)
    }

    /// The official count: 4 image pivots + 8 pivots × ⌊N·r/8⌋ (132 for "128" on LLaVA-1.5).
    @Test func pivotQuotaCount() throws {
        let rule = CountRule.dartPivotQuota
        #expect(rule.count(of: 576, ratio: 128.0 / 576) == 132)
        #expect(rule.count(of: 576, ratio: 192.0 / 576) == 196)
        #expect(rule.count(of: 576, ratio: 64.0 / 576) == 68)
        #expect(rule.count(of: 48, ratio: 192.0 / 576) == 20)
        #expect(rule.count(of: 100, ratio: 0) == 4)
        #expect(rule.count(of: 3, ratio: 0.5) == 3, "clipped to N")
        #expect(try RoutingPolicy.dart(tier: .t128).schedule(layers: 32, originalN: 576, llmN: 576).counts == [132])
    }

    /// The key probe is what the layer caches: the reference's rotated keys of layer 0 equal
    /// its own KV cache entries after running the layer (the cache is filled by the block,
    /// the probe by a separate computation), and the fast decoder's are within float error.
    /// The final norm of both decoders agrees with RMSNorm computed here.
    @Test func keyAndNormProbes() throws {
        let w = try ModelWeights.load(directory: Repo.model("tiny-qwen2-vl"))
        let c = GoldenTraces.traceCase(for: w, model: "tiny-qwen2-vl")
        let reference = ReferenceDecoder(weights: w)
        let plan = LayerPlan(active: Array(0..<c.sequenceLength), positions: c.positions, decodePosition: c.positions.nextDecodePosition)
        var state = try reference.begin(c, kvCapacity: nil)
        let rows = [0, 5, 17, c.sequenceLength - 1]
        let probed = reference.rotatedKeys(layer: 0, rows: rows, positions: c.positions.gathering(rows), state: state)
        reference.run(layer: 0, plan: plan, state: &state)
        for (i, r) in rows.enumerated() {
            let cached = state.caches[0].keys[r]
            #expect(zip(probed[i], cached).allSatisfy { abs($0 - $1) <= 1e-12 * max(1, abs($1)) }, "row \(r)")
        }
        let fast = FastDecoder(weights: w)
        let fastState = try fast.begin(c, kvCapacity: nil)
        let fastKeys = fast.rotatedKeys(layer: 0, rows: rows, positions: c.positions.gathering(rows), state: fastState)
        for (a, b) in zip(fastKeys.joined(), probed.joined()) { #expect(abs(a - b) <= 1e-4 * max(1, abs(b))) }
        let h = reference.hiddenStates(entering: 1, rows: rows, state: state)
        let eps = w.config.rmsNormEps
        let byHand = h.map { x in
            let s = 1 / ((x.reduce(0) { $0 + $1 * $1 } / Double(x.count)) + eps).squareRoot()
            return x.indices.map { x[$0] * s * Double(w.finalNorm[$0]) }
        }
        for (a, b) in zip(reference.finalNormed(h).joined(), byHand.joined()) { #expect(abs(a - b) <= 1e-12 * max(1, abs(b))) }
        for (a, b) in zip(fast.finalNormed(h).joined(), byHand.joined()) { #expect(abs(a - b) <= 1e-5 * max(1, abs(b))) }
    }

    /// The previous layer's keys do not exist at layer 0 or for a token that layer did not
    /// process; asking for them is an error naming the policy, not a crash.
    @Test func previousLayerKeysAreRefusedWhereThereAreNone() throws {
        let w = try ModelWeights.load(directory: Repo.model("tiny-llama"))
        let c = GoldenTraces.traceCase(for: w, model: "tiny-llama")
        var atZero = RoutingPolicy.dart(tier: .t64)
        atZero.decisionLayers = [0]
        #expect { _ = try RoutedPrefill.run(decoder: ReferenceDecoder(weights: w), case: c, policy: atZero) } throws: {
            "\($0)".contains("dart-64") && "\($0)".contains("layer 0")
        }
        // After a decision that defers tokens, a second DART decision cannot read their keys.
        var twice = RoutingPolicy.dart(tier: .t64)
        twice.decisionLayers = [8, 16]
        twice.keepRatios = [0.5, 0.25]
        twice.action = .route(monotonic: false)
        twice.scorer.domain = .allTokens
        #expect { _ = try RoutedPrefill.run(decoder: ReferenceDecoder(weights: w), case: c, policy: twice) } throws: {
            "\($0)".contains("was not processed by layer")
        }
    }

    /// Both decoders take the same DART decision on the shipped models, at the remapped layer.
    @Test(arguments: ["tiny-llama", "tiny-qwen2-vl"])
    func decodersAgree(model: String) throws {
        let w = try ModelWeights.load(directory: Repo.model(model))
        let c = GoldenTraces.traceCase(for: w, model: model)
        let policy = RoutingPolicy.dart(tier: .t192)
        let (_, reference) = try RoutedPrefill.run(decoder: ReferenceDecoder(weights: w), case: c, policy: policy)
        let (_, fast) = try RoutedPrefill.run(decoder: FastDecoder(weights: w), case: c, policy: policy)
        #expect(reference.decisions.map(\.layer) == [1])
        #expect(reference.decisions[0].kept.count == CountRule.dartPivotQuota.count(of: c.grid.count, ratio: 192.0 / 576))
        #expect(fast.decisions.map(\.kept) == reference.decisions.map(\.kept))
    }
}
