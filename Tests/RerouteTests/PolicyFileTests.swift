import Foundation
import RerouteFixtures
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace
import RerouteVerify
import Testing

/// Policies as files (SPEC.md §8.14): every catalog policy round-trips, user schedules run
/// where catalog names do, and bad files are refused naming the file and the field.
@Suite struct PolicyFileTests {
    @Test(arguments: PolicyCatalog.names)
    func everyCatalogPolicyRoundTrips(name: String) throws {
        let p = try #require(PolicyCatalog.named(name))
        let text = PolicyFile.encode(p)
        let back = try PolicyFile.decode(Data(text.utf8), file: "\(name).json")
        #expect(back == p, "\(text)")
        #expect(PolicyFile.encode(back) == text)
    }

    /// A minimal file, edited by `edit`, decoded.
    func decode(_ edit: (inout [String: Any]) -> Void) throws -> RoutingPolicy {
        var o = try JSONSerialization.jsonObject(with: Data(PolicyFile.encode(.rerouteFastV(tier: .t192)).utf8)) as! [String: Any]
        edit(&o)
        return try PolicyFile.decode(try JSONSerialization.data(withJSONObject: o), file: "mine.json")
    }

    func refusal(_ edit: (inout [String: Any]) -> Void) -> InputError? {
        do { _ = try decode(edit); return nil } catch let e as InputError { return e } catch { return nil }
    }

    @Test func badFilesNameTheField() {
        func schedule(_ o: inout [String: Any], _ k: String, _ v: Any) {
            var s = o["schedule"] as! [String: Any]
            s[k] = v
            o["schedule"] = s
        }
        let cases: [(String, (inout [String: Any]) -> Void)] = [
            ("colour", { $0["colour"] = "blue" }),
            ("schedule.keep_ratios[1]", { schedule(&$0, "keep_ratios", [0.2, 1.5, 0.2, 0.2]) }),
            ("schedule.keep_ratios[0]", { schedule(&$0, "keep_ratios", [0, 0.5, 0.2, 0.2]) }),
            ("schedule.decision_layers[2]", { schedule(&$0, "decision_layers", [3, 7, 40, 41]) }),
            ("schedule.decision_layers[1]", { schedule(&$0, "decision_layers", [7, 3, 15, 23]) }),
            ("schedule.keep_ratios", { schedule(&$0, "keep_ratios", [0.2]) }),
            ("schedule", { schedule(&$0, "keep_counts", [1, 2, 3, 4]) }),
            ("scorer.attention", { o in var s = o["scorer"] as! [String: Any]; s["attention"] = "magic"; o["scorer"] = s }),
            ("scorer.heads", { o in var s = o["scorer"] as! [String: Any]; s["heads"] = 3; o["scorer"] = s }),
            ("action", { $0["action"] = "shred" }),
            ("schema_version", { $0["schema_version"] = 2 }),
            ("schedule.reference_depth", { schedule(&$0, "reference_depth", 1.5) }),
            ("name", { $0.removeValue(forKey: "name") }),
            ("vision_stage", { $0.removeValue(forKey: "vision_stage") }),
            ("provenance", { $0.removeValue(forKey: "provenance") }),
            ("vision_stage.dominant_ratio", { $0["vision_stage"] = ["method": "visionzip", "dominant_ratio": 0, "contextual_ratio": 0.1] }),
            ("vision_stage.contextual_ratio", { $0["vision_stage"] = ["method": "visionzip", "dominant_ratio": 0.1, "contextual_ratio": 1.5] }),
            ("vision_stage.keep", { $0["vision_stage"] = ["method": "visionzip", "dominant_ratio": 0.1, "contextual_ratio": 0.1, "keep": 1] }),
            ("vision_stage.method", { $0["vision_stage"] = ["method": "tome", "keep_ratio": 0.5, "count_rule": "floor", "per_region": 1,
                                                          "penalty_quantile": 0.5, "distance_threshold": NSNull(), "self_weight_reset": true] }),
        ]
        for (field, edit) in cases {
            let e = refusal(edit)
            #expect(e?.object == field && e?.file == "mine.json", "\(field): \(String(describing: e))")
        }
        #expect((try? PolicyFile.decode(Data("[1, 2]".utf8), file: "x.json")) == nil)
    }

    @Test func integerCountsAndOwnDepthRunWithoutRemapping() throws {
        let p = try decode { o in
            o["name"] = "fastv-layer2-keep25"
            o["action"] = "delete"
            o["schedule"] = ["reference_depth": 8, "decision_layers": [2], "keep_counts": [25], "count_rule": "floor"]
        }
        let w = try ModelWeights.load(directory: Repo.model("tiny-llama"))
        try PolicyFile.check(p, layers: 8, file: "mine.json")
        let t = try TraceRecorder.record(decoder: ReferenceDecoder(weights: w), model: "tiny-llama",
                                         case: GoldenTraces.traceCase(for: w, model: "tiny-llama"), policy: p, seed: 0)
        #expect(t.decisions.map(\.layer) == [2] && t.decisions.map(\.kept.count) == [25])
        // A depth the layers cannot be remapped to is refused naming the field.
        let deep = try decode { o in o["schedule"] = ["reference_depth": 100, "decision_layers": [1, 2], "keep_ratios": [0.5, 0.25], "count_rule": "floor"] }
        #expect(throws: InputError.self) { try PolicyFile.check(deep, layers: 8, file: "mine.json") }
    }
}
