import Foundation
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace

/// The shipped golden traces (SPEC.md §9.4): for each tiny model, one case and every policy
/// below, produced by the scalar reference decoder. Regenerated only by
/// `reroute golden regenerate`; listed with SHA-256 in `golden/traces/MANIFEST.json`.
public enum GoldenTraces {
    public static let seed = 20_261_125
    /// Policies with a golden trace (dense, and FastV, PDrop, Nüwa, Reroute on each at two budgets).
    public static var policies: [RoutingPolicy] {
        [.dense, .fastV(), .fastV(k: 2, r: 0.75), .pyramidDrop(), .pyramidDrop(lambda: 0.25), .pyramidDropOriginalPositions()]
            + [Tier.t192, .t64].flatMap { t in
                [RoutingPolicy.fastVRelease(tier: t), .pyramidDropRelease(tier: t), .nuwa(tier: t),
                 .rerouteFastV(tier: t), .reroutePDrop(tier: t), .rerouteNuwa(tier: t)]
            }
    }
    /// The golden policies for a model: all of `policies`, except that re-indexed positions
    /// are not defined for M-RoPE models (their traces keep the sliced 3-D positions).
    public static func policies(for c: ModelConfig) -> [RoutingPolicy] {
        c.mropeSection == nil ? policies : policies.filter { $0.positions != .reindexed }
    }

    /// The traces' case for a model: 4 prefix tokens, an image of vision features (so the
    /// projector and Nüwa's stage 1 run), 4 suffix tokens, 3 greedy steps; CLS attention and
    /// similarity features for Nüwa. 1-D RoPE models: a 10×10 image, contiguous positions
    /// (`trace-10x10`). M-RoPE models: a 6×8 image (rows ≠ cols, so the h and w axes differ)
    /// with the 3-D positions of `PositionIDs.multimodal`, as transformers' `get_rope_index`
    /// (`trace-6x8-mrope`). Deterministic from the seed and the model name (SplitMix64,
    /// Box–Muller normals).
    public static func traceCase(for weights: ModelWeights, model: String) -> PromptCase {
        var rng = SplitMix64(seed: UInt64(seed) &+ fnv1a(model))
        let mrope = weights.config.mropeSection != nil
        let grid = mrope ? ImageGrid(rows: 6, cols: 8) : ImageGrid(rows: 10, cols: 10)
        let n = grid.count, dv = weights.projector?.visionDim ?? 0
        let features = Matrix(rows: n, cols: dv, values: (0..<(n * dv)).map { _ in Float(rng.normal()) })
        let logits = (0..<n).map { _ in rng.normal() }
        let total = logits.map { exp($0) }.reduce(0, +)
        let cls = logits.map { Float(exp($0) / total) }
        let sim = Matrix(rows: n, cols: 16, values: (0..<(n * 16)).map { _ in Float(rng.normal()) })
        let vocab = weights.config.vocabSize
        return PromptCase(name: mrope ? "trace-6x8-mrope" : "trace-10x10", prefixTokens: (0..<4).map { _ in rng.integer(below: vocab) },
                          suffixTokens: (0..<4).map { _ in rng.integer(below: vocab) }, visual: .features(features), grid: grid,
                          positions: weights.config.mropeSection == nil ? nil : .multimodal(prefix: 4, grid: grid, suffix: 4),
                          decodeSteps: 3, visionSide: VisionSideInputs(clsAttention: cls, similarityFeatures: sim))
    }

    /// Relative path of a golden trace: `<model>/<policy>.h5`.
    public static func relativePath(model: String, policy: String) -> String { "\(model)/\(policy).h5" }

    static func fnv1a(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }
}

/// SplitMix64 with Box–Muller normals: a specified generator, so golden inputs, benchmark
/// models and test inputs are the same on every machine.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    public mutating func uniform() -> Double { (Double(next() >> 11) + 1) / 9_007_199_254_740_992 }
    /// Uniform in [-1, 1), 24 bits.
    public mutating func nextSigned() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
    public mutating func normal() -> Double { (-2 * log(uniform())).squareRoot() * cos(2 * Double.pi * uniform()) }
    public mutating func integer(below n: Int) -> Int { Int(next() % UInt64(n)) }
}
