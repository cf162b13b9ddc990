import Foundation

/// How a keep ratio becomes an integer count (SPEC.md §8.2).
public enum CountRule: String, Sendable, Equatable, Codable {
    /// `⌊N·r⌋` (official PDrop: `int(N * ratio)`); may be 0.
    case floor
    /// `max(1, ⌊N·r⌋)` (the Reroute release: `max(1, int(N * keep_ratio))`).
    case floorAtLeastOne
    /// `round(N·r)` with halves to even, as Python 3's `round` (FastV's HF path:
    /// `round(N * (1 - R))`).
    case round
    /// `⌈N·r⌉` (Nüwa on Qwen, stage 1).
    case ceil
    /// `4 + 8·⌊N·r/8⌋` (DART: its 4 image pivots, kept, plus a quota of `⌊N·r/8⌋` for each of
    /// its 8 pivots; the official LLaVA `ceil(max_num_trunction // 8)` with
    /// `max_num_trunction = N·r`, and the Qwen2.5-VL `int(L·(1 − ratio)/8)`).
    case dartPivotQuota
    /// `round(N·r)` with halves away from zero (C++'s `std::round`; OpenVINO GenAI's CDPruner).
    case roundHalfAway

    /// The count for `n` tokens at ratio `r`, clipped to `[0, n]`.
    public func count(of n: Int, ratio r: Double) -> Int {
        let x = Double(n) * r
        let k: Int
        switch self {
        case .floor: k = Int(x.rounded(.down))
        case .floorAtLeastOne: k = max(1, Int(x.rounded(.down)))
        case .round: k = Int(x.rounded(.toNearestOrEven))
        case .ceil: k = Int(x.rounded(.up))
        case .dartPivotQuota: k = 4 + 8 * Int((x / 8).rounded(.down))
        case .roundHalfAway: k = Int(x.rounded(.toNearestOrAwayFromZero))
        }
        return min(n, max(0, k))
    }
}

/// A stage schedule: decision layers `l_0 < l_1 < …` and the visual count `k_t` processed
/// from `l_t` up to `l_{t+1}` (exclusive). Layers before `l_0` process all N.
public struct Schedule: Sendable, Equatable, Codable {
    public var decisionLayers: [Int]
    public var counts: [Int]

    public init(decisionLayers: [Int], counts: [Int]) {
        precondition(decisionLayers.count == counts.count, "Schedule: \(decisionLayers.count) layers, \(counts.count) counts")
        self.decisionLayers = decisionLayers
        self.counts = counts
    }

    /// Counts from keep ratios of the **original** N, one documented function for every policy.
    public static func fromRatios(n: Int, decisionLayers: [Int], ratios: [Double], rule: CountRule) -> Schedule {
        Schedule(decisionLayers: decisionLayers, counts: ratios.map { rule.count(of: n, ratio: $0) })
    }

    /// Visual tokens processed at each of `layers` layers: N before the first decision,
    /// then the count of the stage the layer is in.
    public func visualCounts(n: Int, layers: Int) -> [Int] {
        (0..<layers).map { l in
            guard let t = decisionLayers.lastIndex(where: { $0 <= l }) else { return n }
            return counts[t]
        }
    }

    /// The stage index of layer `l` (nil before the first decision).
    public func stage(of l: Int) -> Int? { decisionLayers.lastIndex(where: { $0 <= l }) }
}

/// Remapping layer indices given for a reference depth (LLaVA-1.5: 32) to another depth
/// (SPEC.md §8.3): `l' = max(1, ⌊l · L / L_ref + 1/2⌋)` for l ≥ 1 (a decision at the LLM
/// input, l = 0, stays at 0), and the result must stay strictly
/// increasing and below L. This reproduces the Reroute release's Qwen2.5-VL remap
/// (32 → 28: [2,7,15,23] → [2,6,13,20], [3,7,15,23] → [3,6,13,20]).
public enum LayerRemap {
    public static let referenceDepth = 32

    public static func remap(_ layers: [Int], from reference: Int = referenceDepth, to depth: Int) throws -> [Int] {
        let mapped = layers.map { $0 == 0 ? 0 : max(1, Int((Double($0) * Double(depth) / Double(reference) + 0.5).rounded(.down))) }
        for (a, b) in zip(mapped, mapped.dropFirst()) where b <= a {
            throw RoutingError.badSchedule("remapping \(layers) from \(reference) to \(depth) layers gives \(mapped), not strictly increasing")
        }
        if let last = mapped.last, last >= depth {
            throw RoutingError.badSchedule("remapping \(layers) from \(reference) to \(depth) layers gives \(mapped), past the last layer")
        }
        return mapped
    }
}
