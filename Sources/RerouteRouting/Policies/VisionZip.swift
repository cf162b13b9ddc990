import Foundation
import RerouteModel

extension RoutingPolicy {
    /// VisionZip on LLaVA-1.5 (Yang et al., CVPR 2025, arXiv 2412.04467; dvlab-research/VisionZip@3151f6d,
    /// `visionzip/clip_encoder.py` `CLIPVisionTower_VisionZip.forward`, `visionzip/llava_arch.py`):
    /// before the projector, the CLS token and the dominant patches by CLS attention, then
    /// contextual tokens merged by key similarity (`VisionZipStage`, SPEC.md §8.17); the LLM
    /// runs dense on them with contiguous positions. The tiers are the paper's retained
    /// counts, dominant + contextual = 54 + 10 (the README's 64 setting), 108 + 20 and
    /// 162 + 30 (the same 54 : 10 split; the paper's table for them was not read), so avg_T
    /// is the tier. 1-D RoPE only (the LLaVA path; a contiguous layout is not defined for 3-D
    /// positions).
    public static func visionZip(tier: Tier) -> RoutingPolicy {
        let (dominant, contextual) = visionZipCounts(tier)
        return visionZip(name: "visionzip-\(tier.rawValue)", dominant: dominant, contextual: contextual)
    }

    /// VisionZip keeping `dominant` (the CLS token included) and `contextual` tokens of 576.
    public static func visionZip(name: String, dominant: Int, contextual: Int) -> RoutingPolicy {
        var p = RoutingPolicy.dense
        p.name = name
        p.visionZip = VisionZipStage(dominantRatio: Double(dominant) / 576, contextualRatio: Double(contextual) / 576)
        p.provenance = "VisionZip, arXiv 2412.04467; dvlab-research/VisionZip@3151f6df4fca36a4cd1c985e5956e725b1f9ad02 (visionzip/clip_encoder.py: CLIPVisionTower_VisionZip.forward)"
        return p
    }

    /// (dominant with CLS, contextual) for N = 576.
    static func visionZipCounts(_ tier: Tier) -> (Int, Int) {
        switch tier {
        case .t64: (54, 10)
        case .t128: (108, 20)
        case .t192: (162, 30)
        }
    }
}

/// VisionZip's reduction of one image before the projector (SPEC.md §8.17).
///
/// With `m` the CLS attention per patch (summed over heads, `VisionSideInputs.clsAttention`),
/// `k` the keys of the feature layer averaged over heads (`similarityFeatures`) and `x` the
/// patch features, on N patches:
/// 1. Counts: `D = max(1, round(N·dominantRatio))` dominant tokens, the CLS token among them,
///    and `C = round(N·contextualRatio)` contextual tokens (`CountRule.round`; exact at
///    N = 576).
/// 2. Dominant: the CLS token and the top `D − 1` patches by `m` (ties by value descending,
///    then grid index ascending), in ascending grid order.
/// 3. Contextual: the other patches, ascending, R of them; `step = max(1, ⌊R / C⌋)`; the
///    targets are those at list positions `0, step, 2·step, …`, the first C; each remaining
///    patch joins the target of largest `k̂_o · k̂_t` (`k̂ = k/‖k‖`, a zero key stays zero;
///    ties to the first target, as `torch.argmax`); target t becomes
///    `x_t + (1/n_t) Σ_{o → t} x_o` with n_t the patches that joined it (no mean when none did).
/// 4. The LLM sequence: CLS, the dominant patches, the contextual tokens by ascending target,
///    numbered contiguously (`MergeLayout.listedContiguous`), as the official LLaVA path.
/// The official code runs in the tower's fp16 and raises `ZeroDivisionError` for C = 0,
/// which keeps no contextual token here; for C > R it fails or repeats a patch (SPEC.md §8.17),
/// here each remaining patch is its own target.
public struct VisionZipStage: Sendable, Equatable, Codable {
    /// Dominant tokens (the CLS token included) as a fraction of N.
    public var dominantRatio: Double
    /// Contextual tokens as a fraction of N.
    public var contextualRatio: Double

    public init(dominantRatio: Double, contextualRatio: Double) {
        self.dominantRatio = dominantRatio
        self.contextualRatio = contextualRatio
    }

    /// (D with the CLS token, C) on `n` patches.
    public func counts(patches n: Int) -> (dominant: Int, contextual: Int) {
        (max(1, CountRule.round.count(of: n, ratio: dominantRatio)), CountRule.round.count(of: n, ratio: contextualRatio))
    }

    /// The most tokens the stage hands the LLM on `grid`: D + C, at most N + 1.
    public func budget(grid: ImageGrid) -> Int {
        let (d, c) = counts(patches: grid.count)
        return min(grid.count + 1, d + c)
    }

    /// Refuses a video grid (the stage is defined for one image).
    public static func check(grid: ImageGrid) throws {
        guard !grid.isVideo else { throw RoutingError.badInput("VisionZip is defined for one image; this case is a \(grid.description) video") }
    }

    /// The stage as a merge before the LLM (SPEC.md §8.16): the CLS token (cell N), each
    /// dominant patch kept, each target with its joined patches (weight 1 for the target,
    /// 1/n_t for each joined patch), listed in VisionZip's order and numbered contiguously.
    public func mergePlan(features x: Matrix, inputs: VisionSideInputs, grid: ImageGrid) throws -> MergePlan {
        try Self.check(grid: grid)
        let n = grid.count
        guard x.rows == n, inputs.clsAttention.count == n, inputs.similarityFeatures.rows == n else {
            throw RoutingError.badInput("VisionZip needs features, CLS attention and keys for all \(n) grid cells")
        }
        guard inputs.clsFeature != nil else {
            throw RoutingError.badInput("VisionZip hands the CLS token to the LLM: the case needs vision_side/cls_feature")
        }
        let (d, c) = counts(patches: n)
        let m = inputs.clsAttention.map(Double.init)
        let dominant = try selectTopK(candidates: Array(0..<n), scores: m, k: d - 1, layer: -1).kept
        let isDominant = Set(dominant)
        let rest = (0..<n).filter { !isDominant.contains($0) }
        var tokens = [MergedToken.kept(grid.clsCell)] + dominant.map(MergedToken.kept)
        guard c > 0, !rest.isEmpty else { return MergePlan(tokens: tokens, layout: .listedContiguous) }
        let unit: [[Double]] = rest.map { j in
            let row = inputs.similarityFeatures.row(j).map(Double.init)
            let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return norm > 0 ? row.map { $0 / norm } : row
        }
        let step = max(1, rest.count / c)
        let targets = Array(stride(from: 0, to: rest.count, by: step).prefix(c))
        let isTarget = Set(targets)
        var joined = [[Int]](repeating: [], count: targets.count)
        for o in rest.indices where !isTarget.contains(o) {
            var best = 0, bestValue = -Double.infinity
            for (ti, t) in targets.enumerated() {
                var dot = 0.0
                for e in unit[o].indices { dot += unit[o][e] * unit[t][e] }
                if dot > bestValue { best = ti; bestValue = dot }
            }
            joined[best].append(rest[o])
        }
        for (ti, t) in targets.enumerated() {
            let cell = rest[t], share = joined[ti].isEmpty ? 0 : 1 / Double(joined[ti].count)
            let weighted = ([(cell, 1.0)] + joined[ti].map { ($0, share) }).sorted { $0.0 < $1.0 }
            tokens.append(MergedToken(cell: cell, sources: weighted.map(\.0), weights: weighted.map(\.1)))
        }
        return MergePlan(tokens: tokens, layout: .listedContiguous)
    }
}
