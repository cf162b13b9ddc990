/// One element outside its bound.
public struct Mismatch: Sendable, Equatable, Codable {
    public var row: Int
    public var column: Int
    public var expected: Double
    public var actual: Double
    public var difference: Double { actual - expected }
    public var bound: Double
}

/// The result of comparing two row-structured float tensors under a `Tolerance`.
public struct TensorComparison: Sendable, Codable {
    public var name: String
    public var tolerance: String
    /// Set when a gate failed (shape, NaN, Inf); then the metrics are not computed.
    public var gateFailure: String?
    /// `Σ(a − b)² / Σ a²` (0 when both are all zero).
    public var nmse: Double = 0
    /// Largest `|a − b| / bound` over elements; ≤ 1 passes.
    public var worstRatio: Double = 0
    /// Number of elements outside their bound.
    public var mismatchCount: Int = 0
    /// The worst `maxReported` of them (largest difference over bound first).
    public var mismatches: [Mismatch] = []
    public var nmseLimit: Double
    /// Elements compared.
    public var total: Int = 0
    /// Largest `|a − b|`, and largest `|a − b| / max(|a|, |b|)` where either is non-zero.
    public var maxAbsDifference: Double = 0
    public var maxRelDifference: Double = 0
    /// The smallest row floor that would have passed every element (with the same relative term).
    public var passingRowFloor: Double = 0

    public var passed: Bool { gateFailure == nil && mismatchCount == 0 && nmse <= nmseLimit }
}

/// Compares `actual` against `expected`, row by row (a row is one token's vector).
///
/// Gates first, in this order: same row count, same width per row, no NaN on either side,
/// ±Inf at the same places with the same sign. Then per element the symmetric bound of
/// `tolerance`, and the tensor's NMSE. At most `maxReported` offending elements are kept.
public func compareRows(_ name: String, expected: [[Double]], actual: [[Double]], tolerance: Tolerance,
                        maxReported: Int = 8) -> TensorComparison {
    var result = TensorComparison(name: name, tolerance: tolerance.name, nmseLimit: tolerance.nmse)
    guard expected.count == actual.count else {
        result.gateFailure = "shape: \(expected.count) rows expected, \(actual.count) actual"
        return result
    }
    for (r, (e, a)) in zip(expected, actual).enumerated() {
        if e.count != a.count {
            result.gateFailure = "shape: row \(r) has \(e.count) elements expected, \(a.count) actual"
            return result
        }
        for c in 0..<e.count {
            if e[c].isNaN || a[c].isNaN {
                result.gateFailure = "NaN at [\(r), \(c)]: expected \(e[c]), actual \(a[c])"
                return result
            }
            if e[c].isInfinite || a[c].isInfinite, e[c] != a[c] {
                result.gateFailure = "Inf at [\(r), \(c)]: expected \(e[c]), actual \(a[c])"
                return result
            }
        }
    }
    var sumSquaredError = 0.0, sumSquared = 0.0
    var worst: [(ratio: Double, m: Mismatch)] = []
    for (r, (e, a)) in zip(expected, actual).enumerated() {
        let scale = e.reduce(0.0) { max($0, $1.isFinite ? abs($1) : 0) }
        for c in 0..<e.count where e[c].isFinite {
            let diff = abs(a[c] - e[c])
            result.total += 1
            sumSquaredError += diff * diff
            sumSquared += e[c] * e[c]
            let magnitude = max(abs(a[c]), abs(e[c]))
            result.maxAbsDifference = max(result.maxAbsDifference, diff)
            if magnitude > 0 { result.maxRelDifference = max(result.maxRelDifference, diff / magnitude) }
            let bound = tolerance.relative * magnitude + tolerance.rowFloor * scale
            let excess = diff - tolerance.relative * magnitude
            if excess > 0 { result.passingRowFloor = max(result.passingRowFloor, scale > 0 ? excess / scale : .infinity) }
            let ratio = diff == 0 ? 0 : (bound > 0 ? diff / bound : .infinity)
            result.worstRatio = max(result.worstRatio, ratio)
            if ratio > 1 {
                result.mismatchCount += 1
                worst.append((ratio, Mismatch(row: r, column: c, expected: e[c], actual: a[c], bound: bound)))
                if worst.count / 4 > max(1, maxReported) {
                    worst.sort { $0.ratio > $1.ratio }
                    worst.removeLast(worst.count - maxReported)
                }
            }
        }
    }
    worst.sort { $0.ratio != $1.ratio ? $0.ratio > $1.ratio : ($0.m.row, $0.m.column) < ($1.m.row, $1.m.column) }
    result.mismatches = worst.prefix(maxReported).map(\.m)
    result.nmse = sumSquared > 0 ? sumSquaredError / sumSquared : (sumSquaredError > 0 ? .infinity : 0)
    return result
}
