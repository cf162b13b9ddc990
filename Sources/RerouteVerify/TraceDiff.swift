import Foundation
import RerouteModel
import RerouteRouting
import RerouteTrace

/// Tolerances of a trace comparison (SPEC.md §9.3).
public struct DiffOptions: Sendable, Codable {
    /// Hidden states and logits.
    public var tensors: Tolerance
    /// Decision scores (attention probabilities).
    public var scores: Tolerance
    /// A kept index that differs is a *tie flip* when the scores of the two candidates at
    /// the cut differ by less than this (absolute, in probability).
    public var tieEpsilon: Double
    /// Offending elements reported per dataset.
    public var maxReported: Int

    public init(tensors: Tolerance, scores: Tolerance, tieEpsilon: Double, maxReported: Int = 8) {
        self.tensors = tensors
        self.scores = scores
        self.tieEpsilon = tieEpsilon
        self.maxReported = maxReported
    }

    /// A reference-decoder run against a reference golden: both computed in `Double`, the
    /// golden stored in float32 (as §7.1), scores stored in float64.
    public static let referenceGolden = DiffOptions(
        tensors: Tolerance(name: "reference-vs-golden", relative: 0x1p-24, rowFloor: 1e-12, nmse: 1e-14,
                           reason: "both sides are the reference decoder in float64; only libm differences between "
                               + "machines (~1e-15) and the golden's float32 rounding (half an ulp) separate them"),
        scores: Tolerance(name: "reference-scores", relative: 1e-12, rowFloor: 1e-12, nmse: 1e-20,
                          reason: "float64 probabilities stored in float64; libm differences only"),
        tieEpsilon: 1e-12)

    /// The fast decoder (float32) against reference traces (SPEC.md §10.3). Float32 dot
    /// products of length K err by about `sqrt(K)·2^-24` relative per layer, and the residual
    /// stream accumulates L layers of such errors, about `sqrt(L)` times one: the floor is
    /// `8 · sqrt(max(d, m)) · sqrt(L) · 2^-24` of the row scale (1.8e-5 for the tiny models,
    /// where at most 1.9e-6 was measured). Scores (probabilities) use the same floor of their
    /// row's largest score; a tie flip needs a score gap below 1e-6.
    public static func fastVsReference(_ c: ModelConfig) -> DiffOptions {
        let floor = 8 * Double(max(c.hiddenSize, c.intermediateSize)).squareRoot() * Double(c.layers).squareRoot() * 0x1p-24
        return DiffOptions(
            tensors: Tolerance(name: "fast-vs-reference", relative: 0, rowFloor: floor, nmse: floor * floor,
                               reason: "float32 sums of length max(d, m) over L layers: 8·sqrt(max(d,m))·sqrt(L)·2^-24 of the row scale"),
            scores: Tolerance(name: "fast-scores", relative: 0, rowFloor: floor, nmse: floor * floor,
                              reason: "probabilities from float32 Q/K: the same floor, of the row's largest score"),
            tieEpsilon: 1e-6)
    }
}

/// One compared object.
public struct DiffItem: Sendable, Codable {
    /// Dataset path, with a layer or step in brackets, e.g. `/prefill/hidden_states[3]`.
    public var object: String
    public var kind: CompareKind
    public var passed: Bool
    /// One line: metric or what differs.
    public var summary: String
    /// Offending elements (index, expected, actual, difference), at most `maxReported`.
    public var details: [String] = []
    /// A route difference accepted as a tie flip.
    public var tieFlip = false
    /// For sets: Jaccard distance `1 − |A∩B| / |A∪B|`.
    public var jaccard: Double?
}

/// The comparison of two traces: every object in computation order.
public struct TraceDiffReport: Sendable, Codable {
    public static let schema = "reroute.diff"
    public static let schemaVersion = 1
    public var expected: String
    public var actual: String
    /// "free" or "lockstep" (routes of `actual` forced from `expected`).
    public var mode: String
    public var items: [DiffItem]
    public var passed: Bool { items.allSatisfy(\.passed) }
    public var failures: [DiffItem] { items.filter { !$0.passed } }
    public var tieFlips: [DiffItem] { items.filter(\.tieFlip) }
    /// The first object (in computation order) that differs.
    public var firstDivergence: String? { failures.first?.object }
    /// Whether a lockstep replay may decide the verdict: there is a tie flip and nothing
    /// differs before the first one (later differences may be its consequences; an earlier
    /// one is a real divergence that forcing routes would hide).
    public var lockstepJustified: Bool {
        guard let first = items.firstIndex(where: \.tieFlip) else { return false }
        return items[..<first].allSatisfy(\.passed)
    }
}

/// "field: expected X, actual Y; …" for the top-level fields of two encodable values that differ.
func fieldDifferences<T: Encodable>(_ x: T, _ y: T) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    guard let dx = try? enc.encode(x), let dy = try? enc.encode(y),
          let ox = (try? JSONSerialization.jsonObject(with: dx)) as? [String: Any],
          let oy = (try? JSONSerialization.jsonObject(with: dy)) as? [String: Any] else { return "differs" }
    func text(_ v: Any?) -> String {
        guard let v, let d = try? JSONSerialization.data(withJSONObject: v, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])
        else { return "absent" }
        return String(decoding: d, as: UTF8.self)
    }
    let keys = Set(ox.keys).union(oy.keys).sorted().filter { text(ox[$0]) != text(oy[$0]) }
    return keys.map { "\($0): expected \(text(ox[$0])), actual \(text(oy[$0]))" }.joined(separator: "; ")
}

/// Compares two traces of the same case and policy (SPEC.md §9.3): discrete data exactly,
/// routes as sets (tie flips within ε accepted and flagged), floats under `options`.
public func diffTraces(expected e: Trace, actual a: Trace, options o: DiffOptions, expectedName: String = "expected",
                       actualName: String = "actual") -> TraceDiffReport {
    var items: [DiffItem] = []
    func exact<T: Equatable>(_ object: String, _ x: T, _ y: T, describe: (T) -> String = { "\($0)" }) {
        items.append(DiffItem(object: object, kind: .exact, passed: x == y,
                              summary: x == y ? "equal" : "expected \(clip(describe(x))), actual \(clip(describe(y)))"))
    }
    /// Equal values, or the fields that differ (from their JSON encodings).
    func structured<T: Equatable & Encodable>(_ object: String, _ x: T, _ y: T) {
        items.append(DiffItem(object: object, kind: .exact, passed: x == y,
                              summary: x == y ? "equal" : clip(fieldDifferences(x, y))))
    }
    func bitwise(_ object: String, _ x: [Float], _ y: [Float]) {
        let same = x.count == y.count && zip(x, y).allSatisfy { $0.bitPattern == $1.bitPattern }
        var item = DiffItem(object: object, kind: .bitwise, passed: same, summary: same ? "bit-identical" : "differs")
        if !same, x.count == y.count, let i = x.indices.first(where: { x[$0].bitPattern != y[$0].bitPattern }) {
            item.summary = "first difference at [\(i)]: expected \(x[i]), actual \(y[i])"
        } else if !same {
            item.summary = "\(x.count) values expected, \(y.count) actual"
        }
        items.append(item)
    }
    func tensor(_ object: String, _ x: [[Float]], _ y: [[Float]], _ tol: Tolerance) {
        tensorD(object, x.map { $0.map(Double.init) }, y.map { $0.map(Double.init) }, tol)
    }
    func tensorD(_ object: String, _ x: [[Double]], _ y: [[Double]], _ tol: Tolerance) {
        let c = compareRows(object, expected: x, actual: y, tolerance: tol, maxReported: o.maxReported)
        var item = DiffItem(object: object, kind: .float, passed: c.passed, summary: "")
        if let gate = c.gateFailure {
            item.summary = gate
        } else {
            item.summary = String(format: "NMSE %.2e (limit %.0e), worst %.3f of bound, %d element(s) outside [%@]",
                                  c.nmse, c.nmseLimit, c.worstRatio, c.mismatchCount, tol.name)
            item.details = c.mismatches.map {
                String(format: "[%d, %d]  expected %.9g  actual %.9g  difference %.3g  bound %.3g", $0.row, $0.column,
                       $0.expected, $0.actual, $0.difference, $0.bound)
            }
        }
        items.append(item)
    }
    func set(_ object: String, _ x: [Int], _ y: [Int]) -> DiffItem {
        let sx = Set(x), sy = Set(y)
        let union = sx.union(sy).count
        let jaccard = union == 0 ? 0 : 1 - Double(sx.intersection(sy).count) / Double(union)
        var item = DiffItem(object: object, kind: .set, passed: sx == sy, summary: "equal", jaccard: jaccard)
        if sx != sy {
            item.summary = String(format: "Jaccard distance %.3f; only expected %@; only actual %@", jaccard,
                                  clip("\(sx.subtracting(sy).sorted())"), clip("\(sy.subtracting(sx).sorted())"))
        }
        return item
    }

    // Model, policy and inputs must be the same run.
    structured("/@model_config", e.config, a.config)
    structured("/@policy", e.policy, a.policy)
    exact("/inputs/prefix_ids", e.input.prefixTokens, a.input.prefixTokens)
    exact("/inputs/suffix_ids", e.input.suffixTokens, a.input.suffixTokens)
    exact("/inputs/grid", [e.input.grid.rows, e.input.grid.cols], [a.input.grid.rows, a.input.grid.cols])
    exact("/inputs/positions", e.input.positions, a.input.positions, describe: { "\($0.axes)" })
    exact("/inputs/decode_steps", e.input.decodeSteps, a.input.decodeSteps)
    func visualValues(_ c: PromptCase) -> [Float] {
        switch c.visual { case .features(let m), .embeddings(let m): m.values }
    }
    bitwise("/inputs/visual", visualValues(e.input), visualValues(a.input))
    exact("/llm/visual_grid_indices", e.llmGridIndices ?? [], a.llmGridIndices ?? [])

    let layers = min(e.config.layers, a.config.layers)
    let sameShape = e.sequenceLength == a.sequenceLength && e.config.hiddenSize == a.config.hiddenSize
    for l in 0..<layers {
        if let t = e.decisions.firstIndex(where: { $0.layer == l }) {
            let de = e.decisions[t]
            let dPath = String(format: "/prefill/decisions/%02d", t)
            if let da = a.decisions.first(where: { $0.layer == l }) {
                exact("\(dPath)@budget", de.budget, da.budget)
                items.append(set("\(dPath)/candidates", de.candidates, da.candidates))
                var kept = set("\(dPath)/kept", de.kept, da.kept)
                if !kept.passed {
                    // Tie flip: every differing index within ε of the others at the cut, in both traces' scores.
                    let onlyE = Set(de.kept).subtracting(da.kept), onlyA = Set(da.kept).subtracting(de.kept)
                    func score(_ d: RoutingDecision, _ j: Int) -> Double? { d.candidates.firstIndex(of: j).map { d.scores[$0] } }
                    var gap = 0.0
                    for d in [de, da] {
                        let s = Array(onlyE.union(onlyA)).compactMap { score(d, $0) }
                        if s.count != onlyE.count + onlyA.count { gap = .infinity } else { gap = max(gap, (s.max() ?? 0) - (s.min() ?? 0)) }
                    }
                    if onlyE.count == onlyA.count, gap < o.tieEpsilon {
                        kept.passed = true
                        kept.tieFlip = true
                        kept.summary = String(format: "tie flip (score gap %.3g < ε %.1g): ", gap, o.tieEpsilon) + kept.summary
                    } else {
                        kept.summary += String(format: "; score gap at the cut %.3g ≥ ε %.1g", gap, o.tieEpsilon)
                    }
                }
                items.append(kept)
                items.append(set("\(dPath)/deferred", de.deferred, da.deferred))
                if de.candidates == da.candidates {
                    tensorD("\(dPath)/scores", [de.scores], [da.scores], o.scores)
                }
            } else {
                items.append(DiffItem(object: dPath, kind: .set, passed: false, summary: "no decision at layer \(l) in actual"))
            }
        }
        if l < e.processed.count, l < a.processed.count {
            let p = set("/prefill/processed[\(l)]", e.processed[l], a.processed[l])
            items.append(p)
            if p.passed { exact("/prefill/positions[\(l)]", e.layerPositions[l], a.layerPositions[l]) }
            exact("/prefill/decode_positions[\(l)]", e.decodePositions[l], a.decodePositions[l])
            exact("/prefill/kv_length[\(l)]", e.kvLength[l], a.kvLength[l])
        }
        if sameShape { tensor("/prefill/hidden_states[\(l + 1)]", e.hiddenStates[l + 1], a.hiddenStates[l + 1], o.tensors) }
    }
    for d in a.decisions where !e.decisions.contains(where: { $0.layer == d.layer }) {
        items.append(DiffItem(object: "/prefill/decisions", kind: .set, passed: false, summary: "unexpected decision at layer \(d.layer)"))
    }
    if !sameShape {
        items.append(DiffItem(object: "/prefill/hidden_states", kind: .float, passed: false,
                              summary: "shape [\(e.sequenceLength), \(e.config.hiddenSize)] expected, [\(a.sequenceLength), \(a.config.hiddenSize)] actual"))
    }
    tensor("/prefill/logits", [e.lastLogits], [a.lastLogits], o.tensors)
    exact("/decode/tokens", e.decodeTokens, a.decodeTokens)
    tensor("/decode/step_logits", e.stepLogits, a.stepLogits, o.tensors)
    exact("/decode/kv_length", e.kvLengthAfterDecode, a.kvLengthAfterDecode)
    exact("/budget/visual_tokens", e.budget.layers.map(\.visualTokens), a.budget.layers.map(\.visualTokens))
    exact("/budget/text_tokens", e.budget.layers.map(\.textTokens), a.budget.layers.map(\.textTokens))
    exact("/budget/kv_bytes", e.budget.layers.map(\.kvBytes), a.budget.layers.map(\.kvBytes))
    exact("/budget/flops", e.budget.layers.map(\.flops), a.budget.layers.map(\.flops))
    return TraceDiffReport(expected: expectedName, actual: actualName, mode: a.provenance.mode, items: items)
}

private func clip(_ s: String, _ n: Int = 160) -> String { s.count <= n ? s : String(s.prefix(n)) + "…" }

extension TraceDiffReport {
    /// h5diff-like text: failing objects with their offending elements, then the first
    /// divergence and the failure list again. `verbose` lists passing objects too.
    public func render(verbose: Bool = false) -> String {
        var out = ["expected: \(expected)", "actual:   \(actual)", "mode:     \(mode)", ""]
        for item in items where verbose || !item.passed || item.tieFlip {
            out.append("\(item.passed ? (item.tieFlip ? "flip" : "  ok") : "DIFF") \(item.object) (\(item.kind.rawValue)): \(item.summary)")
            for d in item.details { out.append("        \(d)") }
        }
        out.append("")
        out.append("\(items.count) object(s) compared, \(failures.count) differ, \(tieFlips.count) tie flip(s)")
        if let first = firstDivergence {
            out.append("first divergence: \(first)")
            out.append("differences:")
            out += failures.map { "  \($0.object): \($0.summary)" }
        }
        return out.joined(separator: "\n")
    }

    public func json() throws -> String {
        struct Envelope: Codable {
            var schema: String, schema_version: Int, passed: Bool, first_divergence: String?, report: TraceDiffReport
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let env = Envelope(schema: Self.schema, schema_version: Self.schemaVersion, passed: passed, first_divergence: firstDivergence,
                           report: self)
        return String(decoding: try enc.encode(env), as: UTF8.self)
    }
}
