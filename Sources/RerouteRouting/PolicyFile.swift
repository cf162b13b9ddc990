import Foundation
import RerouteModel

/// Routing policies as files (`reroute.policy` v1, JSON; SPEC.md §8.14): every value of a
/// `RoutingPolicy` under a documented name, so a user's own schedule runs wherever a catalog
/// name does (`--policy-file`). Reading is strict: an unknown field, a missing one, a value
/// of the wrong type or outside its range is an `InputError` naming the file and the field.
public enum PolicyFile {
    public static let schema = "reroute.policy"
    public static let schemaVersion = 1
    /// Largest accepted file (a policy is a few hundred bytes).
    public static let maxBytes = 1 << 20

    // MARK: Names

    static let queries: [(String, Scorer.Query)] = [("last_token", .lastToken), ("last_instruction_token", .lastInstructionToken)]
    static let attentions: [(String, Scorer.Attention)] = [("decision_layer_input", .decisionLayerInput),
                                                           ("produced_by_previous_layer", .producedByPreviousLayer)]
    static let heads: [(String, Scorer.HeadAggregation)] = [("mean", .mean), ("max", .max)]
    static let domains: [(String, Scorer.SoftmaxDomain)] = [("all_tokens", .allTokens), ("active_tokens", .activeTokens)]
    static let countRules: [(String, CountRule)] = [("floor", .floor), ("floor_at_least_one", .floorAtLeastOne), ("round", .round),
                                                    ("ceil", .ceil), ("dart_pivot_quota", .dartPivotQuota),
                                                    ("round_half_away", .roundHalfAway)]
    static let actions: [(String, RoutingAction)] = [("delete", .delete), ("route", .route(monotonic: false)),
                                                     ("route_monotonic", .route(monotonic: true))]
    static let positionPolicies: [(String, PositionPolicy)] = [("original", .original), ("reindexed", .reindexed),
                                                               ("text_after_grid_width", .textAfterGridWidth),
                                                               ("text_after_kept_max", .textAfterKeptMax)]
    static let selections: [(String, SelectionRule)] = SelectionRule.allCases.map { ($0.rawValue, $0) }

    static func name<T: Equatable>(_ v: T, in table: [(String, T)]) -> String { table.first { $0.1 == v }!.0 }

    // MARK: Writing

    /// The file form of `p`: pretty-printed JSON with sorted keys, every field present, and
    /// numbers written so they read back to the same bits.
    public static func encode(_ p: RoutingPolicy) -> String {
        var scorer: [String: JSON] = ["attention": .string(name(p.scorer.attention, in: attentions)),
                                      "heads": .string(name(p.scorer.heads, in: heads)),
                                      "softmax_domain": .string(name(p.scorer.domain, in: domains))]
        if case .lastRows(let k) = p.scorer.query {
            scorer["query"] = .string("last_rows")
            scorer["query_rows"] = .int(k)
        } else {
            scorer["query"] = .string(name(p.scorer.query, in: queries))
        }
        var schedule: [String: JSON] = ["reference_depth": .int(p.referenceDepth), "decision_layers": .array(p.decisionLayers.map(JSON.int)),
                                        "count_rule": .string(name(p.countRule, in: countRules))]
        if let counts = p.keepCounts {
            schedule["keep_counts"] = .array(counts.map(JSON.int))
        } else {
            schedule["keep_ratios"] = .array(p.keepRatios.map(JSON.number))
        }
        let stage: JSON = p.visionStage.map { s in
            .object(["method": .string("nuwa"), "keep_ratio": .number(s.keepRatio), "count_rule": .string(name(s.countRule, in: countRules)),
                     "per_region": .int(s.perRegion), "penalty_quantile": .number(s.penaltyQuantile),
                     "distance_threshold": s.distanceThreshold.map(JSON.number) ?? .null, "self_weight_reset": .bool(s.selfWeightReset)])
        } ?? p.visionZip.map { z in
            .object(["method": .string("visionzip"), "dominant_ratio": .number(z.dominantRatio), "contextual_ratio": .number(z.contextualRatio)])
        } ?? .null
        let matching: JSON = switch p.budgetMatching {
        case .none: .null
        case .perLayer(let base): .object(["per_layer": .string(base)])
        case .averageTokens(let base): .object(["average_tokens": .string(base)])
        }
        let root: JSON = .object(["schema": .string(schema), "schema_version": .int(schemaVersion), "name": .string(p.name),
                                  "provenance": p.provenance.map(JSON.string) ?? .null, "scorer": .object(scorer),
                                  "schedule": .object(schedule), "action": .string(name(p.action, in: actions)),
                                  "positions": .string(name(p.positions, in: positionPolicies)), "vision_stage": stage,
                                  "budget_matching": matching,
                                  "selection": p.selection.map { JSON.string($0.rawValue) } ?? .null])
        return root.text(indent: "") + "\n"
    }

    /// A JSON value as policy files write it (Foundation's writer rounds doubles to 15–16
    /// digits; Swift's `description` is the shortest text that reads back to the same bits).
    enum JSON {
        case null, bool(Bool), int(Int), number(Double), string(String), array([JSON]), object([String: JSON])

        func text(indent: String) -> String {
            let inner = indent + "  "
            switch self {
            case .null: return "null"
            case .bool(let b): return b ? "true" : "false"
            case .int(let i): return "\(i)"
            case .number(let d): return d == d.rounded() && abs(d) < 1e15 ? "\(Int(d)).0" : "\(d)"
            case .string(let s):
                let data = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
                return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
            case .array(let a):
                if a.isEmpty { return "[]" }
                if a.allSatisfy({ if case .int = $0 { true } else if case .number = $0 { true } else { false } }) {
                    return "[" + a.map { $0.text(indent: inner) }.joined(separator: ", ") + "]"
                }
                return "[\n" + a.map { inner + $0.text(indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
            case .object(let o):
                if o.isEmpty { return "{}" }
                return "{\n" + o.keys.sorted().map { k in inner + JSON.string(k).text(indent: inner) + ": " + o[k]!.text(indent: inner) }
                    .joined(separator: ",\n") + "\n\(indent)}"
            }
        }
    }

    // MARK: Reading

    /// Reads and validates a policy file (regular files only, at most `maxBytes`).
    public static func load(path: String) throws -> RoutingPolicy {
        try decode(try FilePaths.readSmall(path, maxBytes: maxBytes, what: "a policy file"), file: path)
    }

    /// Parses and validates the file form (`file` names the source in errors).
    public static func decode(_ data: Data, file: String) throws -> RoutingPolicy {
        func bad(_ field: String, _ why: String) -> InputError { InputError(.badValue, file: file, object: field, why) }
        // JSONDecoder, not JSONSerialization: its doubles are exact (a ratio must read back to its bits).
        guard case .object(let root)? = try? JSONDecoder().decode(JSONNode.self, from: data) else {
            throw InputError(.badJSON, file: file, "not a JSON object")
        }
        let r = Fields(root, path: "", bad: bad)
        try r.allowOnly(["schema", "schema_version", "name", "provenance", "scorer", "schedule", "action", "positions", "vision_stage",
                         "budget_matching", "selection"])
        try r.require(["provenance", "vision_stage", "budget_matching"])  // present, null allowed
        guard try r.string("schema") == schema else { throw bad("schema", "'\(try r.string("schema"))', expected '\(schema)'") }
        guard try r.int("schema_version") == schemaVersion else {
            throw bad("schema_version", "version \(try r.int("schema_version")); this build reads version \(schemaVersion)")
        }
        let name = try r.string("name")
        guard !name.isEmpty, name.count <= 200 else { throw bad("name", "must be 1–200 characters") }

        let s = try r.object("scorer")
        try s.allowOnly(["query", "query_rows", "attention", "heads", "softmax_domain"])
        let queryName = try s.string("query")
        let query: Scorer.Query
        if queryName == "last_rows" {
            let k = try s.int("query_rows")
            guard (1...4096).contains(k) else { throw bad("scorer.query_rows", "\(k) is outside 1…4096") }
            query = .lastRows(k)
        } else {
            guard let q = queries.first(where: { $0.0 == queryName })?.1 else {
                throw bad("scorer.query", "'\(queryName)' is not one of \((queries.map(\.0) + ["last_rows"]).joined(separator: ", "))")
            }
            query = q
            if s.has("query_rows") { throw bad("scorer.query_rows", "only with query 'last_rows'") }
        }
        let scorer = Scorer(query: query, attention: try s.choice("attention", attentions), heads: try s.choice("heads", heads),
                            domain: try s.choice("softmax_domain", domains))

        let sc = try r.object("schedule")
        try sc.allowOnly(["reference_depth", "decision_layers", "keep_ratios", "keep_counts", "count_rule"])
        let depth = try sc.int("reference_depth")
        guard (1...4096).contains(depth) else { throw bad("schedule.reference_depth", "\(depth) layers is outside 1…4096") }
        let layers = try sc.ints("decision_layers")
        for (i, l) in layers.enumerated() where !(0..<depth).contains(l) {
            throw bad("schedule.decision_layers[\(i)]", "layer \(l) is outside 0 ..< \(depth) (the reference depth; 0 is the LLM input)")
        }
        for i in layers.indices.dropFirst() where layers[i] <= layers[i - 1] {
            throw bad("schedule.decision_layers[\(i)]", "layers must increase strictly (\(layers[i - 1]) then \(layers[i]))")
        }
        var ratios: [Double] = [], counts: [Int]?
        switch (sc.has("keep_ratios"), sc.has("keep_counts")) {
        case (true, false):
            ratios = try sc.doubles("keep_ratios")
            for (i, x) in ratios.enumerated() where !(x > 0 && x <= 1) {
                throw bad("schedule.keep_ratios[\(i)]", "\(x) is outside (0, 1] (a fraction of the original visual tokens)")
            }
            if ratios.count != layers.count {
                throw bad("schedule.keep_ratios", "\(ratios.count) ratios for \(layers.count) decision layers")
            }
        case (false, true):
            let c = try sc.ints("keep_counts")
            for (i, x) in c.enumerated() where !(1...RoutingPolicy.maxKeepCount).contains(x) {
                throw bad("schedule.keep_counts[\(i)]", "\(x) is outside 1…\(RoutingPolicy.maxKeepCount)")
            }
            if c.count != layers.count { throw bad("schedule.keep_counts", "\(c.count) counts for \(layers.count) decision layers") }
            counts = c
        case (true, true): throw bad("schedule", "give keep_ratios or keep_counts, not both")
        case (false, false): throw bad("schedule", "missing keep_ratios (or keep_counts)")
        }

        var stage: NuwaVisionStage?, visionZip: VisionZipStage?
        if let v = try r.optionalObject("vision_stage") {
            if try v.string("method") == "visionzip" {
                try v.allowOnly(["method", "dominant_ratio", "contextual_ratio"])
                let d = try v.double("dominant_ratio"), c = try v.double("contextual_ratio")
                guard d > 0 && d <= 1 else { throw bad("vision_stage.dominant_ratio", "\(d) is outside (0, 1]") }
                guard c >= 0 && c <= 1 else { throw bad("vision_stage.contextual_ratio", "\(c) is outside [0, 1]") }
                visionZip = VisionZipStage(dominantRatio: d, contextualRatio: c)
            } else {
                try v.allowOnly(["method", "keep_ratio", "count_rule", "per_region", "penalty_quantile", "distance_threshold", "self_weight_reset"])
                try v.require(["distance_threshold"])
                guard try v.string("method") == "nuwa" else {
                    throw bad("vision_stage.method", "'\(try v.string("method"))'; the supported vision-side stages are 'nuwa' and 'visionzip'")
                }
                let ratio = try v.double("keep_ratio"), perRegion = try v.int("per_region"), q = try v.double("penalty_quantile")
                guard ratio > 0 && ratio <= 1 else { throw bad("vision_stage.keep_ratio", "\(ratio) is outside (0, 1]") }
                guard (1...4).contains(perRegion) else { throw bad("vision_stage.per_region", "\(perRegion) is outside 1…4 (a 2×2 region)") }
                guard q >= 0 && q <= 1 else { throw bad("vision_stage.penalty_quantile", "\(q) is outside [0, 1]") }
                let tau = try v.optionalDouble("distance_threshold")
                if let tau, !(tau > 0 && tau.isFinite) { throw bad("vision_stage.distance_threshold", "\(tau) must be positive") }
                stage = NuwaVisionStage(keepRatio: ratio, countRule: try v.choice("count_rule", countRules), perRegion: perRegion,
                                        penaltyQuantile: q, distanceThreshold: tau, selfWeightReset: try v.bool("self_weight_reset"))
            }
        }

        var matching = BudgetMatching.none
        if let m = try r.optionalObject("budget_matching") {
            try m.allowOnly(["per_layer", "average_tokens"])
            switch (m.has("per_layer"), m.has("average_tokens")) {
            case (true, false): matching = .perLayer(base: try m.string("per_layer"))
            case (false, true): matching = .averageTokens(base: try m.string("average_tokens"))
            default: throw bad("budget_matching", "give exactly one of per_layer or average_tokens (the base policy's name)")
            }
        }
        let provenance = try r.optionalString("provenance")
        var p = RoutingPolicy(name: name, scorer: scorer, decisionLayers: layers, referenceDepth: depth, keepRatios: ratios,
                              countRule: try sc.choice("count_rule", countRules), action: try r.choice("action", actions),
                              positions: try r.choice("positions", positionPolicies), visionStage: stage, budgetMatching: matching)
        p.keepCounts = counts
        p.visionZip = visionZip
        p.provenance = provenance
        if let rule = try r.optionalString("selection") {
            guard let v = selections.first(where: { $0.0 == rule })?.1 else {
                throw bad("selection", "'\(rule)' is not one of \(selections.map(\.0).joined(separator: ", ")) (or null: top-k of the scorer's scores)")
            }
            p.selection = v
        }
        do { try p.validate() } catch let e as RoutingError { throw bad("(policy)", "\(e)") }
        return p
    }

    /// Checks that `p` can run on a model of `layers` layers (its decision layers, remapped
    /// from the reference depth when it differs, fall in 0 ..< layers), naming `file`.
    public static func check(_ p: RoutingPolicy, layers: Int, file: String) throws {
        do {
            _ = try p.schedule(layers: layers, originalN: 1, llmN: 1)
        } catch let e as RoutingError {
            throw InputError(.badValue, file: file, object: "schedule.decision_layers",
                             "does not fit a model of \(layers) layers (reference depth \(p.referenceDepth)): \(e)")
        }
    }
}

/// A parsed JSON value (numbers as exact doubles).
private enum JSONNode: Decodable {
    case null, bool(Bool), number(Double), string(String), array([JSONNode]), object([String: JSONNode])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null } else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let d = try? c.decode(Double.self) { self = .number(d) } else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONNode].self) { self = .array(a) } else { self = .object(try c.decode([String: JSONNode].self)) }
    }
}

/// Typed access to one JSON object's fields, with errors naming the field path.
private struct Fields {
    let object: [String: JSONNode]
    let path: String
    let bad: (String, String) -> InputError

    init(_ object: [String: JSONNode], path: String, bad: @escaping (String, String) -> InputError) {
        self.object = object
        self.path = path
        self.bad = bad
    }

    func field(_ k: String) -> String { path.isEmpty ? k : "\(path).\(k)" }
    func has(_ k: String) -> Bool {
        if let v = object[k], case .null = v { return false }
        return object[k] != nil
    }

    /// Keys that must be present (their value may be null).
    func require(_ keys: [String]) throws {
        if let missing = keys.first(where: { object[$0] == nil }) { throw bad(field(missing), "missing (write null for none)") }
    }

    func allowOnly(_ keys: Set<String>) throws {
        if let unknown = object.keys.sorted().first(where: { !keys.contains($0) }) {
            throw bad(field(unknown), "unknown field (known: \(keys.sorted().joined(separator: ", ")))")
        }
    }

    func value(_ k: String) throws -> JSONNode {
        guard has(k) else { throw bad(field(k), "missing") }
        return object[k]!
    }

    func string(_ k: String) throws -> String {
        guard case .string(let s) = try value(k) else { throw bad(field(k), "must be a string") }
        return s
    }

    func optionalString(_ k: String) throws -> String? { has(k) ? try string(k) : nil }

    func bool(_ k: String) throws -> Bool {
        guard case .bool(let b) = try value(k) else { throw bad(field(k), "must be true or false") }
        return b
    }

    static func integer(_ v: JSONNode) -> Int? {
        guard case .number(let d) = v, d.rounded() == d, abs(d) <= 9_007_199_254_740_992 else { return nil }
        return Int(d)
    }

    static func number(_ v: JSONNode) -> Double? {
        guard case .number(let d) = v, d.isFinite else { return nil }
        return d
    }

    func int(_ k: String) throws -> Int {
        guard let i = Self.integer(try value(k)) else { throw bad(field(k), "must be an integer") }
        return i
    }

    func double(_ k: String) throws -> Double {
        guard let d = Self.number(try value(k)) else { throw bad(field(k), "must be a finite number") }
        return d
    }

    func optionalDouble(_ k: String) throws -> Double? { has(k) ? try double(k) : nil }

    func array(_ k: String, _ what: String) throws -> [JSONNode] {
        guard case .array(let a) = try value(k), a.count <= 4096 else { throw bad(field(k), "must be an array of at most 4096 \(what)") }
        return a
    }

    func ints(_ k: String) throws -> [Int] {
        try array(k, "integers").enumerated().map { i, v in
            guard let x = Self.integer(v) else { throw bad("\(field(k))[\(i)]", "must be an integer") }
            return x
        }
    }

    func doubles(_ k: String) throws -> [Double] {
        try array(k, "numbers").enumerated().map { i, v in
            guard let x = Self.number(v) else { throw bad("\(field(k))[\(i)]", "must be a finite number") }
            return x
        }
    }

    func object(_ k: String) throws -> Fields {
        guard case .object(let o) = try value(k) else { throw bad(field(k), "must be an object") }
        return Fields(o, path: field(k), bad: bad)
    }

    func optionalObject(_ k: String) throws -> Fields? { has(k) ? try object(k) : nil }

    func choice<T>(_ k: String, _ table: [(String, T)]) throws -> T {
        let s = try string(k)
        guard let v = table.first(where: { $0.0 == s })?.1 else {
            throw bad(field(k), "'\(s)' is not one of \(table.map { $0.0 }.joined(separator: ", "))")
        }
        return v
    }
}
