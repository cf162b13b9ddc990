import Foundation
import RerouteModel
import RerouteRouting
import RerouteTrace

/// Compares two traces of the same case and policy (SPEC.md §9.3) and returns the verdict.
///
/// Objects are compared in computation order, so the first failure is the first divergence:
/// discrete data exactly, each decision's route (kept and deferred together) by `RouteRule`,
/// floats under `rules`. After the first accepted route difference (a tie flip or route
/// slack) everything that depends on which tokens were processed — later decisions,
/// processed sets, positions, hidden states, logits, tokens — is skipped, not failed: it can
/// only be compared like for like by a lockstep replay (`judge(…, replay:)`). Counts (KV
/// lengths, decode positions, budgets) are still compared exactly. Both traces are then
/// checked against the trace laws (SPEC.md §11.2) other than the tie-break law, which only
/// the suite's own decoders promise.
public func compareTraces(expected e: Trace, actual a: Trace, rules r: ComparisonRules, expectedName: String = "expected",
                          actualName: String = "actual", mode: Verdict.Mode? = nil) -> Verdict {
    var items: [Finding] = []
    func add(_ object: String, _ kind: Finding.Kind, _ ok: Bool, _ summary: String) {
        items.append(Finding(object: object, kind: kind, status: ok ? .passed : .failed, summary: summary))
    }
    func skip(_ object: String, _ kind: Finding.Kind, _ why: String) {
        items.append(Finding(object: object, kind: kind, status: .skipped, summary: why))
    }
    func exact<T: Equatable>(_ object: String, _ x: T, _ y: T, describe: (T) -> String = { "\($0)" }) {
        add(object, .exact, x == y, x == y ? "equal" : "expected \(clip(describe(x))), actual \(clip(describe(y)))")
    }
    /// Positions of the same processed tokens: the first token whose ids differ, with both ids
    /// on every axis, and how many differ.
    func positions(_ object: String, _ x: PositionIDs, _ y: PositionIDs, tokens: [Int]) {
        guard x != y else { return add(object, .exact, true, "equal") }
        guard x.count == y.count, x.axisCount == y.axisCount else {
            return add(object, .exact, false, "expected \(x.count) positions on \(x.axisCount) axes, actual \(y.count) on \(y.axisCount)")
        }
        let differing = (0..<x.count).filter { i in x.axes.indices.contains { x.axes[$0][i] != y.axes[$0][i] } }
        let i = differing[0]
        add(object, .exact, false, "\(differing.count) of \(x.count) tokens differ; first at sequence index \(tokens.indices.contains(i) ? tokens[i] : i): "
            + "expected \(x.axes.map { $0[i] }), actual \(y.axes.map { $0[i] })")
    }
    func structured<T: Equatable & Encodable>(_ object: String, _ x: T, _ y: T) {
        add(object, .exact, x == y, x == y ? "equal" : clip(fieldDifferences(x, y)))
    }
    func bitwise(_ object: String, _ x: [Float], _ y: [Float]) {
        guard x.count == y.count else { return add(object, .bitwise, false, "\(x.count) values expected, \(y.count) actual") }
        if let i = x.indices.first(where: { x[$0].bitPattern != y[$0].bitPattern }) {
            add(object, .bitwise, false, "first difference at [\(i)]: expected \(x[i]), actual \(y[i])")
        } else {
            add(object, .bitwise, true, "bit-identical")
        }
    }
    func tensor(_ object: String, _ x: [[Float]], _ y: [[Float]], _ tol: Tolerance, rows: String = "sequence index") {
        tensorD(object, x.map { $0.map(Double.init) }, y.map { $0.map(Double.init) }, tol, rows: rows)
    }
    func tensorD(_ object: String, _ x: [[Double]], _ y: [[Double]], _ tol: Tolerance, rows: String) {
        let c = compareRows(object, expected: x, actual: y, tolerance: tol, maxReported: r.maxReported)
        items.append(tensorFinding(object, c, tol, rows: rows))
    }
    func sets(_ object: String, _ x: [Int], _ y: [Int], space: String) {
        let sx = Set(x), sy = Set(y)
        if sx == sy { return add(object, .set, true, "equal") }
        add(object, .set, false, String(format: "Jaccard distance %.3f; only expected %@; only actual %@ (%@)", jaccard(sx, sy),
                                        clip("\(sx.subtracting(sy).sorted())"), clip("\(sy.subtracting(sx).sorted())"), space))
    }

    // Model, policy and inputs must be the same run.
    structured("/@model_config", e.config, a.config)
    structured("/@policy", e.policy, a.policy)
    exact("/inputs/prefix_ids", e.input.prefixTokens, a.input.prefixTokens)
    exact("/inputs/suffix_ids", e.input.suffixTokens, a.input.suffixTokens)
    exact("/inputs/grid", e.input.grid.shape, a.input.grid.shape)
    exact("/inputs/positions", e.input.positions, a.input.positions, describe: { "\($0.axes)" })
    exact("/inputs/decode_steps", e.input.decodeSteps, a.input.decodeSteps)
    func visualValues(_ c: PromptCase) -> [Float] {
        switch c.visual { case .features(let m), .embeddings(let m): m.values }
    }
    bitwise("/inputs/visual", visualValues(e.input), visualValues(a.input))
    exact("/llm/visual_grid_indices", e.llmGridIndices ?? [], a.llmGridIndices ?? [])

    let layers = min(e.config.layers, a.config.layers)
    let sameShape = e.sequenceLength == a.sequenceLength && e.config.hiddenSize == a.config.hiddenSize
    /// The first accepted route difference: (decision path, layer).
    var stop: (path: String, layer: Int)?
    var stopReason: String { "not comparable like for like after the accepted route difference at \(stop!.path) (layer \(stop!.layer))" }
    if r.routesOnly { skip("/prefill/hidden_states", .float, "not compared (routes only)") }
    // Compact traces store some rows only: the rows both sides store are compared.
    let commonRows = e.hiddenStateRows == nil && a.hiddenStateRows == nil ? nil
        : e.storedHiddenRows.filter(Set(a.storedHiddenRows).contains)
    if sameShape, !r.routesOnly, let rows = commonRows {
        if rows.isEmpty {
            skip("/prefill/hidden_states", .float, "no sequence row is stored by both traces")
        } else {
            skip("/prefill/hidden_states (other rows)", .float, "compact trace: only sequence rows \(rows) are stored by both")
        }
    }
    func hiddenStates(_ l: Int) {
        guard let rows = commonRows else {
            return tensor("/prefill/hidden_states[\(l)]", e.hiddenStates[l], a.hiddenStates[l], r.tensors)
        }
        guard !rows.isEmpty else { return }
        tensor("/prefill/hidden_states[\(l)]", rows.map { e.hiddenState(entering: l, row: $0)! },
               rows.map { a.hiddenState(entering: l, row: $0)! }, r.tensors, rows: "stored row")
    }
    for l in 0..<layers {
        if let t = e.decisions.firstIndex(where: { $0.layer == l }) {
            let de = e.decisions[t]
            let path = String(format: "/prefill/decisions/%02d", t)
            if let da = a.decisions.first(where: { $0.layer == l }) {
                exact("\(path)@budget", de.budget, da.budget)
                if stop != nil {
                    skip("\(path)/{candidates,kept,deferred,scores}", .set, stopReason)
                } else {
                    sets("\(path)/candidates", de.candidates, da.candidates, space: "visual grid cells")
                    let route = routeFinding("\(path)/{kept,deferred}", de, da, r)
                    items.append(route)
                    if route.status == .accepted { stop = (path, l) }
                    if r.routesOnly {
                        skip("\(path)/scores", .float, "not compared (routes only)")
                    } else if de.candidates == da.candidates {
                        tensorD("\(path)/scores", [de.scores], [da.scores], r.scores, rows: "decision")
                    }
                }
            } else {
                add(path, .set, false, "no decision at layer \(l) in actual (expected keeps \(de.kept.count) of \(de.candidates.count); "
                    + "actual decides at layers \(a.decisions.map(\.layer)))")
            }
        }
        if l < e.processed.count, l < a.processed.count {
            if stop != nil {
                if stop!.layer == l { skip("/prefill/{processed,positions,hidden_states}[\(l)...]", .set, stopReason) }
            } else {
                sets("/prefill/processed[\(l)]", e.processed[l], a.processed[l], space: "sequence indices")
                if !items.last!.failed { positions("/prefill/positions[\(l)]", e.layerPositions[l], a.layerPositions[l], tokens: e.processed[l]) }
            }
            exact("/prefill/decode_positions[\(l)]", e.decodePositions[l], a.decodePositions[l])
            exact("/prefill/kv_length[\(l)]", e.kvLength[l], a.kvLength[l])
        }
        if sameShape, stop == nil, !r.routesOnly {
            hiddenStates(l + 1)
        }
    }
    for d in a.decisions where !e.decisions.contains(where: { $0.layer == d.layer }) {
        add("/prefill/decisions", .set, false, "unexpected decision at layer \(d.layer) in actual (it keeps \(d.kept.count) of "
            + "\(d.candidates.count); expected decides at layers \(e.decisions.map(\.layer)))")
    }
    if !sameShape {
        add("/prefill/hidden_states", .float, false,
            "shape [\(e.sequenceLength), \(e.config.hiddenSize)] expected, [\(a.sequenceLength), \(a.config.hiddenSize)] actual")
    }
    if r.routesOnly {
        skip("/prefill/logits, /decode/tokens, /decode/step_logits", .float, "not compared (routes only)")
    } else if stop != nil {
        skip("/prefill/logits, /decode/tokens, /decode/step_logits", .float, stopReason)
    } else {
        tensor("/prefill/logits", [e.lastLogits], [a.lastLogits], r.tensors, rows: "last position")
        decode(e, a, r, into: &items)
    }
    exact("/decode/kv_length", e.kvLengthAfterDecode, a.kvLengthAfterDecode)
    exact("/budget/visual_tokens", e.budget.layers.map(\.visualTokens), a.budget.layers.map(\.visualTokens))
    exact("/budget/text_tokens", e.budget.layers.map(\.textTokens), a.budget.layers.map(\.textTokens))
    exact("/budget/kv_bytes", e.budget.layers.map(\.kvBytes), a.budget.layers.map(\.kvBytes))
    exact("/budget/flops", e.budget.layers.map(\.flops), a.budget.layers.map(\.flops))
    for (side, t) in [("expected", e), ("actual", a)] { items += lawFindings(t, side: side, maxReported: r.maxReported) }
    return Verdict(expected: expectedName, actual: actualName, rules: r, mode: mode ?? (stop == nil ? .free : .stopped), findings: items)
}

/// Greedy tokens (exact, except a near-tie flip by `RouteRule.greedyNearTie`, after which
/// later steps are skipped) and the step logits up to the flip.
private func decode(_ e: Trace, _ a: Trace, _ r: ComparisonRules, into items: inout [Finding]) {
    let flip = zip(e.decodeTokens, a.decodeTokens).enumerated().first { $0.element.0 != $0.element.1 }?.offset
    var compared = e.stepLogits.count
    if e.decodeTokens.count != a.decodeTokens.count || flip == nil {
        let same = e.decodeTokens == a.decodeTokens
        items.append(Finding(object: "/decode/tokens", kind: .exact, status: same ? .passed : .failed,
                             summary: same ? "equal" : "expected \(e.decodeTokens), actual \(a.decodeTokens)"))
    } else if let s = flip, s < e.stepLogits.count, RouteRule.greedyNearTie(expectedLogits: e.stepLogits[s], tolerance: r.tensors) {
        items.append(Finding(object: "/decode/tokens", kind: .exact, status: .accepted,
                             summary: "greedy near-tie at step \(s): expected token \(e.decodeTokens[s]), actual \(a.decodeTokens[s]); "
                                 + "the expected step's top two logits are closer than the tolerance lets each move; later steps skipped"))
        compared = s + 1
    } else {
        items.append(Finding(object: "/decode/tokens", kind: .exact, status: .failed,
                             summary: "expected \(e.decodeTokens), actual \(a.decodeTokens) (first difference at step \(flip!))"))
    }
    let c = compareRows("/decode/step_logits", expected: e.stepLogits.prefix(compared).map { $0.map(Double.init) },
                        actual: a.stepLogits.prefix(compared).map { $0.map(Double.init) }, tolerance: r.tensors, maxReported: r.maxReported)
    items.append(tensorFinding("/decode/step_logits", c, r.tensors, rows: "decode step"))
}

/// A decision's kept and deferred sets as one finding, judged by `RouteRule`.
func routeFinding(_ object: String, _ e: RoutingDecision, _ a: RoutingDecision, _ r: ComparisonRules) -> Finding {
    let ke = Set(e.kept), ka = Set(a.kept)
    let deferredConsistent = Set(e.deferred) == Set(e.candidates).subtracting(ke) && Set(a.deferred) == Set(a.candidates).subtracting(ka)
    var metrics = RouteMetrics(layer: e.layer, jaccard: jaccard(ke, ka), onlyExpected: ke.subtracting(ka).sorted(),
                               onlyActual: ka.subtracting(ke).sorted(), scoreGap: RouteRule.tieGap(expected: e, actual: a), epsilon: r.tieEpsilon)
    let only = "kept only in expected \(clip("\(metrics.onlyExpected)")), only in actual \(clip("\(metrics.onlyActual)")) (visual grid cells)"
    guard deferredConsistent else {
        return Finding(object: object, kind: .set, status: .failed,
                       summary: "deferred is not candidates \\ kept in \(Set(e.deferred) == Set(e.candidates).subtracting(ke) ? "actual" : "expected")",
                       route: metrics)
    }
    switch RouteRule.classify(expected: e, actual: a, rules: r) {
    case .same:
        return Finding(object: object, kind: .set, status: .passed, summary: "equal", route: metrics)
    case .tieFlip(let gap, let eps):
        metrics.acceptance = "tie-flip"
        return Finding(object: object, kind: .set, status: .accepted,
                       summary: "tie flip (score spread \(RouteRule.format(gap)) < ε \(RouteRule.format(eps)) of the largest score): \(only)",
                       route: metrics)
    case .withinSlack(let m):
        metrics.acceptance = "route-slack"
        return Finding(object: object, kind: .set, status: .accepted,
                       summary: "within route slack \(m) (each side's choice in the other's top-(k+\(m))): \(only)", route: metrics)
    case .divergent(let why):
        return Finding(object: object, kind: .set, status: .failed,
                       summary: String(format: "Jaccard distance %.3f; %@; %@", metrics.jaccard, only, why), route: metrics)
    }
}

/// A tensor comparison as a finding: the metric line, the worst elements, and for a failure
/// the tolerance that would have passed.
extension TensorMetrics {
    /// The metrics of a comparison made under `tol`.
    init(_ c: TensorComparison, tolerance tol: Tolerance) {
        self.init(tolerance: tol.name, relative: tol.relative, rowFloor: tol.rowFloor, nmseLimit: c.nmseLimit,
                  gate: c.gateFailure, nmse: c.nmse, maxAbsDifference: c.maxAbsDifference, maxRelDifference: c.maxRelDifference,
                  worstRatio: c.worstRatio, mismatched: c.mismatchCount, total: c.total, passingRowFloor: c.passingRowFloor,
                  passingNMSE: c.nmse, worst: c.mismatches)
    }
}

func tensorFinding(_ object: String, _ c: TensorComparison, _ tol: Tolerance, rows: String) -> Finding {
    let metrics = TensorMetrics(c, tolerance: tol)
    if let gate = c.gateFailure {
        return Finding(object: object, kind: .float, status: .failed, summary: gate, tensor: metrics)
    }
    var summary = String(format: "NMSE %.2e (limit %.0e), max abs difference %.3g, worst %.3f of bound; mismatched %d / %d (%.2f%%) [%@]",
                         c.nmse, c.nmseLimit, c.maxAbsDifference, c.worstRatio, c.mismatchCount, c.total,
                         c.total > 0 ? 100 * Double(c.mismatchCount) / Double(c.total) : 0, tol.name)
    if !c.passed {
        summary += String(format: "; would pass with row floor ≥ %.3g and NMSE limit ≥ %.3g", max(c.passingRowFloor, tol.rowFloor),
                          max(c.nmse, tol.nmse))
    }
    let details = c.mismatches.map {
        String(format: "[%@ %d, column %d]  expected %.9g  actual %.9g  difference %.3g  bound %.3g", rows, $0.row, $0.column,
               $0.expected, $0.actual, $0.difference, $0.bound)
    }
    return Finding(object: object, kind: .float, status: c.passed ? .passed : .failed, summary: summary, details: details, tensor: metrics)
}

/// The trace laws (all but the tie-break law) on one side, one finding per applicable law.
func lawFindings(_ t: Trace, side: String, maxReported: Int) -> [Finding] {
    let caps = AdapterCapabilities(keepsTopKOfScores: false, scoresAreAttention: t.policy.capabilities.scoresAreAttention)
    let found = TraceLaws.check(t, capabilities: caps, input: side)
    return ConformanceLaw.traceLaws.compactMap { law in
        guard let f = found[law] else { return nil }
        return Finding(object: "law:\(law.rawValue) (\(side))", kind: .law, status: f.isEmpty ? .passed : .failed,
                       summary: f.isEmpty ? "holds" : "\(law.statement)",
                       details: f.prefix(maxReported).map { "at \($0.location): expected \($0.expected), actual \($0.actual)" })
    }
}

func jaccard(_ x: Set<Int>, _ y: Set<Int>) -> Double {
    let union = x.union(y).count
    return union == 0 ? 0 : 1 - Double(x.intersection(y).count) / Double(union)
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

func clip(_ s: String, _ n: Int = 160) -> String { s.count <= n ? s : String(s.prefix(n)) + "…" }

/// Judges `actual` against `expected`: the free comparison, and — when it accepted a route
/// difference with nothing failing before it, and a replay is available — a lockstep replay
/// (`replay(forced)` re-runs the actual side with every decision's kept set forced from
/// `expected`), compared in full. The accepted differences of the free comparison are part
/// of the lockstep verdict.
public func judge(expected e: Trace, actual a: Trace, rules r: ComparisonRules, expectedName: String = "expected",
                  actualName: String = "actual", replay: (([Int: [Int]]) throws -> Trace)? = nil) throws -> Verdict {
    let free = compareTraces(expected: e, actual: a, rules: r, expectedName: expectedName, actualName: actualName)
    guard let replay, free.lockstepJustified else { return free }
    let replayed = try replay(e.forcedRoutes)
    var v = compareTraces(expected: e, actual: replayed, rules: r, expectedName: expectedName, actualName: actualName + " (lockstep)",
                          mode: .lockstep)
    v.findings.insert(contentsOf: free.acceptedRoutes, at: 0)
    return v
}

extension Trace {
    /// Every decision's kept set by layer: what a lockstep replay of this trace forces.
    public var forcedRoutes: [Int: [Int]] {
        Dictionary(decisions.map { ($0.layer, $0.kept) }, uniquingKeysWith: { a, _ in a })
    }
}
