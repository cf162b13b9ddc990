import Foundation
import RerouteModel
import RerouteRouting
import RerouteVerify
import Testing

/// The teacher-forced layer-wise check (SPEC.md §9.7): it agrees where the decoders agree, and
/// names the layer (and the decision) where the reference's weights were changed.
@Suite struct LayerCheckTests {
    static let weights = try! ModelWeights.load(directory: Repo.model("tiny-qwen2"))
    static let testCase = GoldenTraces.traceCase(for: weights, model: "tiny-qwen2")

    @Test func agreesOnEveryLayerOfEveryKindOfPolicy() throws {
        for policy in [RoutingPolicy.reroutePDrop(tier: .t64), .nuwa(tier: .t64), .fastV()] {
            let r = try LayerCheck.run(weights: Self.weights, model: "tiny-qwen2", case: Self.testCase, adapter: policy, layers: Array(0..<8))
            #expect(r.passed, "\(policy.name): \(r.layers.flatMap(\.findings).filter(\.failed).map(\.summary))")
            // Every decision layer was decided again and judged (route and scores).
            let decided = r.layers.filter { l in l.findings.contains { $0.route != nil } }.map(\.layer)
            #expect(decided == r.fast.decisions.map(\.layer), "\(policy.name)")
        }
    }

    @Test func aChangedLayerIsNamedAndTheOthersStillAgree() throws {
        var changed = Self.weights
        changed.layers[3].postNorm = changed.layers[3].postNorm.map { $0 * 1.001 }
        let r = try LayerCheck.run(weights: Self.weights, referenceWeights: changed, model: "tiny-qwen2", case: Self.testCase,
                                   adapter: RoutingPolicy.dense, layers: [2, 3, 4])
        #expect(r.layers.map(\.passed) == [true, false, true])
        #expect(r.layers[1].findings.first(where: \.failed)?.object == "/prefill/hidden_states[4]")
    }

    @Test func aChangedDecisionLayerChangesItsScores() throws {
        let policy = RoutingPolicy.reroutePDrop(tier: .t64)
        let layer = try #require(try policy.schedule(layers: 8, originalN: 100, llmN: 100).decisionLayers.last)
        var changed = Self.weights
        changed.layers[layer].inputNorm = changed.layers[layer].inputNorm.map { $0 * 1.01 }
        let r = try LayerCheck.run(weights: Self.weights, referenceWeights: changed, model: "tiny-qwen2", case: Self.testCase,
                                   adapter: policy, layers: [layer])
        #expect(!r.passed && r.layers[0].findings.contains { $0.failed && $0.object.hasSuffix("/scores") }, "\(r.layers[0].findings.map(\.summary))")
    }
}
