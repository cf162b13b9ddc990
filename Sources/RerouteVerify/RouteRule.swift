import RerouteRouting

/// How two decisions' kept sets relate (SPEC.md §9.3). The one place that says when a
/// differing route is legitimate.
public enum RouteAgreement: Sendable, Equatable {
    case same
    /// Accepted: the sets differ by as many tokens each way, and in both traces' scores every
    /// differing candidate is within `epsilon · s_max` of the others (`gap` is the largest
    /// spread, relative to `s_max`).
    case tieFlip(gap: Double, epsilon: Double)
    /// Accepted by route slack m: each side's differing choices lie in the other's top-(k+m).
    case withinSlack(slack: Int)
    /// A real divergence; `reason` says why no acceptance applies.
    case divergent(reason: String)

    public var accepted: Bool {
        switch self {
        case .tieFlip, .withinSlack: true
        case .same, .divergent: false
        }
    }
}

/// The rules that accept a differing route or a differing greedy token, and that say when a
/// lockstep replay may decide a verdict. Every comparison (diff, verify, conformance, the
/// property tests) goes through these.
public enum RouteRule {
    /// Compares two decisions on the same candidates under `rules`.
    public static func classify(expected e: RoutingDecision, actual a: RoutingDecision, rules: ComparisonRules) -> RouteAgreement {
        if Set(e.kept) == Set(a.kept) { return .same }
        let onlyE = Set(e.kept).subtracting(a.kept), onlyA = Set(a.kept).subtracting(e.kept)
        guard onlyE.count == onlyA.count else {
            return .divergent(reason: "the kept sets have different sizes (\(e.kept.count) expected, \(a.kept.count) actual)")
        }
        if let gap = tieGap(expected: e, actual: a), gap < rules.tieEpsilon {
            return .tieFlip(gap: gap, epsilon: rules.tieEpsilon)
        }
        if let m = rules.routeSlack, withinTop(onlyA, of: e, k: e.kept.count + min(max(0, m), e.candidates.count)),
           withinTop(onlyE, of: a, k: a.kept.count + min(max(0, m), a.candidates.count)) {
            return .withinSlack(slack: m)
        }
        let gap = tieGap(expected: e, actual: a)
        return .divergent(reason: gap.map { "score spread at the cut \(format($0)) of the largest score ≥ ε \(format(rules.tieEpsilon))" }
                          ?? "a differing index has no score in one of the traces")
    }

    /// The largest spread, in either trace's scores, of the candidates the kept sets differ
    /// in, relative to the decision's largest score (nil when one has no score).
    public static func tieGap(expected e: RoutingDecision, actual a: RoutingDecision) -> Double? {
        let differing = Set(e.kept).symmetricDifference(a.kept)
        let scale = (e.scores + a.scores).map(abs).max() ?? 0
        var gap = 0.0
        for d in [e, a] {
            let s = d.candidates.indices.filter { differing.contains(d.candidates[$0]) }.map { d.scores[$0] }
            guard s.count == differing.count, let lo = s.min(), let hi = s.max() else { return nil }
            gap = max(gap, hi - lo)
        }
        return scale > 0 ? gap / scale : gap
    }

    /// Whether every index of `indices` is among the top `k` candidates of `d` by score
    /// (score descending, index ascending, as the suite's tie-break).
    static func withinTop(_ indices: Set<Int>, of d: RoutingDecision, k: Int) -> Bool {
        guard d.scores.count == d.candidates.count,
              let top = try? selectTopK(candidates: d.candidates, scores: d.scores, k: k, layer: d.layer) else { return false }
        return indices.isSubset(of: Set(top.kept))
    }

    /// Whether both traces' routes differ only in accepted ways (and differ somewhere) under `rules`.
    public static func onlyAcceptedFlips(_ e: [RoutingDecision], _ a: [RoutingDecision], rules: ComparisonRules) -> Bool {
        guard e.count == a.count else { return false }
        var flipped = false
        for (x, y) in zip(e, a) {
            let r = classify(expected: x, actual: y, rules: rules)
            if case .divergent = r { return false }
            flipped = flipped || r.accepted
        }
        return flipped
    }

    /// A greedy token may differ where the expected step's top two logits are closer than
    /// the tolerance lets each move: `l₁ − l₂ < 2·(b(l₁) + b(l₂))`, `b` the element bound of
    /// `tolerance` on that row (SPEC.md §10.3).
    public static func greedyNearTie(expectedLogits x: [Float], tolerance t: Tolerance) -> Bool {
        guard x.count >= 2 else { return false }
        let sorted = x.map(Double.init).sorted(by: >)
        let scale = sorted.map(abs).max() ?? 0
        func bound(_ v: Double) -> Double { t.relative * abs(v) + t.rowFloor * scale }
        return sorted[0] - sorted[1] < 2 * (bound(sorted[0]) + bound(sorted[1]))
    }

    static func format(_ v: Double) -> String { v == 0 ? "0" : String(format: "%.3g", v) }
}
