import Foundation
import RerouteModel

/// Nüwa stage 1 (SPEC.md §8.8), vision side, before the projector: keep spatially spread
/// anchors and aggregate similar nearby patches into the low-attention ones.
///
/// Source: Man-PaperRejected/Nuwa@175b7d5 `nuwa/clip_encoder.py`, `nuwa/utils.py` (LLaVA path).
/// 1. `m` = CLS attention per patch. Each 2×2 region of the grid (edge regions may be
///    smaller) proposes its top `perRegion` patches by m; the global top K1 of those, sorted
///    by grid index, are the anchors (K1 = count rule of N · keepRatio).
/// 2. `f` = L2-normalised similarity features; `W[a, j] = relu(f_a · f_j) · (1 − min(‖g_a − g_j‖ / τ, 1))`
///    with grid coordinates g and threshold τ.
/// 3. Anchors with `m ≥ quantile_q(m[anchors])` (linear interpolation, as torch.quantile)
///    keep only their own entry. Rows are divided by `Σ_j W[a, j] + 1e-8`; then the self
///    weight is set to 1 (LLaVA code; `selfWeightReset`).
/// 4. Token a = `Σ_j W[a, j] x_j` over the patch features x (rounded to f32), then the projector:
///    a merge before the LLM (`MergePlan`, SPEC.md §8.16) placed at the anchor's cell.
/// Ties in every top-k break by value descending, then grid index ascending.
public struct NuwaVisionStage: Sendable, Equatable, Codable {
    public var keepRatio: Double
    public var countRule: CountRule
    public var perRegion: Int
    public var penaltyQuantile: Double
    /// τ in grid units; nil: `sqrt(280) · cols / 24` (the official 280 on a 24-wide grid).
    public var distanceThreshold: Double?
    public var selfWeightReset: Bool

    public init(keepRatio: Double, countRule: CountRule = .floorAtLeastOne, perRegion: Int, penaltyQuantile: Double = 0.55,
                distanceThreshold: Double? = nil, selfWeightReset: Bool = true) {
        self.keepRatio = keepRatio
        self.countRule = countRule
        self.perRegion = perRegion
        self.penaltyQuantile = penaltyQuantile
        self.distanceThreshold = distanceThreshold
        self.selfWeightReset = selfWeightReset
    }

    public struct Result: Sendable, Equatable {
        /// Grid cells kept, ascending.
        public var anchors: [Int]
        /// Anchors treated as high-attention (their own feature only).
        public var highAttention: [Int]
        /// Aggregated features `[K1, d_vision]`, rounded to f32.
        public var features: Matrix
    }

    /// Anchor selection and aggregation on one image.
    public func select(features x: Matrix, inputs: VisionSideInputs, grid: ImageGrid) throws -> Result {
        let (plan, high) = try mergePlanAndHighAttention(features: x, inputs: inputs, grid: grid)
        return Result(anchors: plan.cells, highAttention: high, features: plan.apply(to: x))
    }

    /// Stage 1 as a merge before the LLM (SPEC.md §8.16): one token per anchor, placed at the
    /// anchor's cell, combining the patches with non-zero weight `W[a, j]` (steps 2–3); a
    /// high-attention anchor combines only itself.
    public func mergePlan(features x: Matrix, inputs: VisionSideInputs, grid: ImageGrid) throws -> MergePlan {
        try mergePlanAndHighAttention(features: x, inputs: inputs, grid: grid).plan
    }

    /// Refuses a video grid: stage 1 is defined for one image (its proposal grid is 2-D).
    public static func checkImage(_ grid: ImageGrid) throws {
        guard !grid.isVideo else { throw RoutingError.badInput("Nüwa stage 1 is defined for one image; this case is a \(grid.description) video") }
    }

    /// The most tokens stage 1 gives on `grid`: K1, at most the region proposals.
    public func budget(grid: ImageGrid) -> Int { min(proposalCount(grid: grid), countRule.count(of: grid.count, ratio: keepRatio)) }

    func mergePlanAndHighAttention(features x: Matrix, inputs: VisionSideInputs, grid: ImageGrid) throws -> (plan: MergePlan, high: [Int]) {
        let n = grid.count
        try Self.checkImage(grid)
        guard x.rows == n, inputs.clsAttention.count == n, inputs.similarityFeatures.rows == n else {
            throw RoutingError.badInput("Nüwa stage 1 needs features, CLS attention and similarity features for all \(n) grid cells")
        }
        let m = inputs.clsAttention.map(Double.init)
        // 1. Region candidates, then global anchors.
        var proposals: [Int] = []
        for r0 in stride(from: 0, to: grid.rows, by: 2) {
            for c0 in stride(from: 0, to: grid.cols, by: 2) {
                var cells: [Int] = []
                for r in r0..<min(r0 + 2, grid.rows) { for c in c0..<min(c0 + 2, grid.cols) { cells.append(r * grid.cols + c) } }
                proposals += try selectTopK(candidates: cells, scores: cells.map { m[$0] }, k: perRegion, layer: -1).kept
            }
        }
        proposals.sort()
        let k1 = min(proposals.count, countRule.count(of: n, ratio: keepRatio))
        let anchors = try selectTopK(candidates: proposals, scores: proposals.map { m[$0] }, k: k1, layer: -1).kept
        // 2. Similarity × distance kernel.
        let s = inputs.similarityFeatures
        let unit: [[Double]] = (0..<n).map { i in
            let row = s.row(i).map(Double.init)
            let norm = max(row.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)  // as torch's F.normalize
            return row.map { $0 / norm }
        }
        let tau = distanceThreshold ?? (280.0.squareRoot() * Double(grid.cols) / 24)
        // 3. High-attention anchors by quantile.
        let threshold = Self.quantile(anchors.map { m[$0] }, penaltyQuantile)
        let high = Set(anchors.filter { m[$0] >= threshold })
        var tokens: [MergedToken] = []
        for a in anchors {
            var w = [Double](repeating: 0, count: n)
            let (ra, ca) = (a / grid.cols, a % grid.cols)
            for j in 0..<n where !high.contains(a) || j == a {
                var cosine = 0.0
                for e in 0..<unit[a].count { cosine += unit[a][e] * unit[j][e] }
                let dr = Double(j / grid.cols - ra), dc = Double(j % grid.cols - ca)
                w[j] = max(0, cosine) * (1 - min((dr * dr + dc * dc).squareRoot() / tau, 1))
            }
            let total = w.reduce(0, +) + 1e-8
            for j in 0..<n { w[j] /= total }
            if selfWeightReset { w[a] = 1 }
            // 4. Token a = Σ_j W[a, j] x_j over the patches of non-zero weight (MergePlan.apply).
            let sources = (0..<n).filter { w[$0] != 0 }
            tokens.append(MergedToken(cell: a, sources: sources, weights: sources.map { w[$0] }))
        }
        return (MergePlan(tokens: tokens), anchors.filter { high.contains($0) })
    }

    /// The LLM-side case: aggregated features of the anchors, their grid cells, and the
    /// anchors' original positions (sliced, never recomputed).
    public func apply(to c: PromptCase) throws -> PromptCase {
        guard case .features(let x) = c.visual else { throw RoutingError.badInput("Nüwa stage 1 needs vision features, not embeddings") }
        guard let inputs = c.visionSide else { throw RoutingError.badInput("Nüwa stage 1 needs the case's vision-side inputs") }
        guard c.visualGridIndices == nil else { throw RoutingError.badInput("Nüwa stage 1 needs the full image") }
        return try mergePlan(features: x, inputs: inputs, grid: c.grid).apply(to: c)
    }

    /// Number of region proposals on `grid`: each 2×2 region (smaller at odd edges) proposes
    /// `min(perRegion, its cells)`; K1 can never exceed this.
    public func proposalCount(grid: ImageGrid) -> Int {
        var total = 0
        for r0 in stride(from: 0, to: grid.rows, by: 2) {
            for c0 in stride(from: 0, to: grid.cols, by: 2) {
                total += min(perRegion, (min(r0 + 2, grid.rows) - r0) * (min(c0 + 2, grid.cols) - c0))
            }
        }
        return total
    }

    /// `torch.quantile` with linear interpolation: position `q · (n − 1)` in the sorted values.
    static func quantile(_ values: [Double], _ q: Double) -> Double {
        let v = values.sorted()
        guard !v.isEmpty else { return .infinity }
        let pos = q * Double(v.count - 1)
        let lo = Int(pos.rounded(.down)), hi = Int(pos.rounded(.up))
        return v[lo] + (v[hi] - v[lo]) * (pos - Double(lo))
    }
}
