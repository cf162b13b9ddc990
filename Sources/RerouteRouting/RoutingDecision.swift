/// One routing decision, as a plain value (SPEC.md §8.4). Indices are relative to the
/// original visual span (0 ..< N), sorted ascending.
public struct RoutingDecision: Sendable, Equatable, Codable {
    /// Decision layer: the first layer that runs with `kept`.
    public var layer: Int
    /// Visual tokens that competed.
    public var candidates: [Int]
    /// Selected: processed from this layer until the next decision.
    public var kept: [Int]
    /// Candidates not selected: bypass (route) or removed (delete).
    public var deferred: [Int]
    /// `scores[i]` is the score of `candidates[i]`.
    public var scores: [Double]
    /// The integer budget k of this stage (`kept.count == min(budget, candidates.count)`).
    public var budget: Int

    public init(layer: Int, candidates: [Int], kept: [Int], deferred: [Int], scores: [Double], budget: Int) {
        self.layer = layer
        self.candidates = candidates
        self.kept = kept
        self.deferred = deferred
        self.scores = scores
        self.budget = budget
    }
}

/// Top-k selection with the suite's fixed tie-break (SPEC.md §8.4): order by score
/// descending, then index ascending; keep the first `k`; return them sorted ascending.
/// `-0.0` and `+0.0` are equal scores. A NaN score is an error.
///
/// - Returns: (kept, deferred), both ascending; `deferred = candidates \ kept`.
public func selectTopK(candidates: [Int], scores: [Double], k: Int, layer: Int) throws -> (kept: [Int], deferred: [Int]) {
    precondition(candidates.count == scores.count, "selectTopK: \(candidates.count) candidates, \(scores.count) scores")
    if let i = scores.firstIndex(where: \.isNaN) { throw RoutingError.nanScore(layer: layer, index: candidates[i]) }
    let order = candidates.indices.sorted { a, b in
        scores[a] != scores[b] ? scores[a] > scores[b] : candidates[a] < candidates[b]
    }
    let take = Set(order.prefix(max(0, min(k, candidates.count))).map { candidates[$0] })
    return (candidates.filter { take.contains($0) }.sorted(), candidates.filter { !take.contains($0) }.sorted())
}
