import RerouteModel

/// A token the LLM sees in place of the image tokens it combines (SPEC.md §8.16): the vector
/// `Σ_s weights[s] · x[sources[s]]` over the vision-side vectors x of its source cells, where
/// cell `N` (`ImageGrid.clsCell`) is the image's CLS token when the case carries it. Under the
/// plan's layout it takes cell `cell`'s place in the sequence and its position ids, or its
/// place in the plan's list. A token kept as it is has `sources == [cell]` and `weights == [1]`.
public struct MergedToken: Sendable, Equatable, Codable {
    /// The cell the token stands for: whose sequence slot and position ids it takes under
    /// `MergeLayout.atCells`, and what `visual_grid_indices` records for it.
    public var cell: Int
    /// Cells combined, strictly ascending.
    public var sources: [Int]
    /// One finite weight ≥ 0 per source, not all 0.
    public var weights: [Double]

    public init(cell: Int, sources: [Int], weights: [Double]) {
        self.cell = cell
        self.sources = sources
        self.weights = weights
    }

    /// The cell kept as it is.
    public static func kept(_ cell: Int) -> MergedToken { MergedToken(cell: cell, sources: [cell], weights: [1]) }

    /// Whether the token is its own cell unchanged.
    public var isKept: Bool { sources == [cell] && weights == [1] }
}

/// Where a plan's tokens go in the LLM sequence and which position ids they take (SPEC.md §8.16).
public enum MergeLayout: String, Sendable, Equatable, Codable {
    /// By strictly ascending cell, each at its cell's slot with its cell's position ids (sliced).
    case atCells
    /// In the order the plan lists them (distinct cells), and the whole LLM sequence numbered
    /// `p₀, p₀ + 1, …` with `p₀` the case's smallest position id (1-D positions only):
    /// VisionZip's LLaVA path, which numbers the compacted sequence `arange(0, S')`.
    case listedContiguous
}

/// What a reduction before the LLM returns (SPEC.md §8.16): the tokens the LLM sees, by the
/// plan's layout. A cell is then kept (a token of its own, unchanged), merged (a source of
/// one or more tokens, with the weights stated), or dropped (in no token).
public struct MergePlan: Sendable, Equatable, Codable {
    public var tokens: [MergedToken]
    public var layout: MergeLayout

    public init(tokens: [MergedToken], layout: MergeLayout = .atCells) {
        self.tokens = tokens
        self.layout = layout
    }

    /// The tokens' cells in sequence order: the LLM-side case's `visualGridIndices`.
    public var cells: [Int] { tokens.map(\.cell) }

    /// Grid cells in no token.
    public func dropped(grid: ImageGrid) -> [Int] {
        let used = Set(tokens.flatMap(\.sources))
        return (0..<grid.count).filter { !used.contains($0) }
    }

    /// Why the plan breaks the merge laws for a grid and budget, or nil: at most `budget`
    /// tokens; cells strictly ascending (`atCells`) or distinct (`listedContiguous`), each a
    /// cell of the grid or, with `cls`, the CLS cell; each token's sources strictly ascending
    /// such cells with one finite weight ≥ 0 each, not all 0.
    public func problem(grid: ImageGrid, budget: Int, cls: Bool = false) -> String? {
        if tokens.count > budget { return "\(tokens.count) tokens, the budget is \(budget)" }
        if tokens.isEmpty { return "no token" }
        let cells = self.cells
        let valid = 0...(cls ? grid.clsCell : grid.count - 1)
        switch layout {
        case .atCells:
            if zip(cells, cells.dropFirst()).contains(where: { $0 >= $1 }) { return "placement cells \(cells.prefix(12)) are not strictly ascending" }
        case .listedContiguous:
            if Set(cells).count != cells.count { return "cells \(cells.prefix(12)) list a cell twice" }
        }
        for t in tokens {
            guard valid.contains(t.cell) else { return "token at cell \(t.cell) is outside the \(grid.description) grid\(cls ? " and its CLS cell" : "")" }
            guard !t.sources.isEmpty, t.sources.count == t.weights.count else {
                return "token at cell \(t.cell): \(t.sources.count) sources, \(t.weights.count) weights"
            }
            if zip(t.sources, t.sources.dropFirst()).contains(where: { $0 >= $1 }) || !valid.contains(t.sources[0]) || !valid.contains(t.sources.last!) {
                return "token at cell \(t.cell): sources \(t.sources.prefix(12)) are not strictly ascending cells of the grid"
            }
            if let w = t.weights.first(where: { !$0.isFinite || $0 < 0 }) { return "token at cell \(t.cell): weight \(w) is not finite and ≥ 0" }
            if t.weights.allSatisfy({ $0 == 0 }) { return "token at cell \(t.cell): every weight is 0" }
        }
        return nil
    }

    /// The tokens' vectors from the vision-side vectors `x` (`[cells][width]`, the CLS token's
    /// last when there is one): for each token and column, `Σ_s w_s · x[source_s]` accumulated
    /// in Double over the sources in ascending order, skipping zero weights, then rounded to Float.
    public func apply(to x: Matrix) -> Matrix {
        var out: [Float] = []
        out.reserveCapacity(tokens.count * x.cols)
        for t in tokens {
            for e in 0..<x.cols {
                var acc = 0.0
                for (j, w) in zip(t.sources, t.weights) where w != 0 { acc += w * Double(x[j, e]) }
                out.append(Float(acc))
            }
        }
        return Matrix(rows: tokens.count, cols: x.cols, values: out)
    }

    /// The LLM-side case: the tokens' vectors in place of the image's, in sequence order by the
    /// layout, with the position ids it gives (sliced from the cells, or contiguous).
    public func apply(to c: PromptCase) throws -> PromptCase {
        guard c.visualGridIndices == nil else { throw RoutingError.badInput("a merge before the LLM needs the full image") }
        let p = c.prefixTokens.count
        var out = c
        let cls = c.visionSide?.clsFeature
        switch c.visual {
        case .features(let x):
            let rows = cls.map { Matrix(rows: x.rows + 1, cols: x.cols, values: x.values + $0) } ?? x
            out.visual = .features(apply(to: rows))
        case .embeddings(let x): out.visual = .embeddings(apply(to: x))
        }
        out.visualGridIndices = cells
        out.positions = try layout.positions(of: c, cells: cells)
        return out
    }
}

extension MergeLayout {
    /// The position ids of the LLM sequence when the visual tokens of `c` (a full image) are
    /// replaced by tokens at `cells`: the cells' own (`atCells`, sliced) or `p₀ … p₀ + S' − 1`
    /// (`listedContiguous`, 1-D only; a CLS cell has no position of its own).
    public func positions(of c: PromptCase, cells: [Int]) throws -> PositionIDs {
        let p = c.prefixTokens.count
        switch self {
        case .atCells:
            return c.positions.gathering(Array(0..<p) + cells.map { p + $0 } + Array((p + c.visual.count)..<c.sequenceLength))
        case .listedContiguous:
            guard !c.positions.isMultimodal else {
                throw RoutingError.badInput("a merge laid out contiguously is defined for 1-D positions; this case has 3-D M-RoPE positions")
            }
            return .contiguous(p + cells.count + c.suffixTokens.count, from: c.positions.axes[0].min() ?? 0)
        }
    }

    /// The layout of a recorded LLM input: contiguous when the policy's vision-side stage
    /// declares it (VisionZip) or the cells are not ascending (only that layout lists them
    /// so), else at the cells.
    public static func of(policy: RoutingPolicy, cells: [Int]) -> MergeLayout {
        policy.visionZip != nil || zip(cells, cells.dropFirst()).contains(where: { $0 >= $1 }) ? .listedContiguous : .atCells
    }
}

/// What a reduction before the LLM sees: the case's vision-side vectors and inputs.
public struct MergeInput: Sendable {
    /// Vision features `[grid cells][d_vision]` (before the projector), or visual embeddings.
    public let visual: VisualInput
    public let grid: ImageGrid
    /// CLS attention and similarity features, when the case has them.
    public let visionSide: VisionSideInputs?
    /// The most tokens the reduction may return.
    public let budget: Int

    public init(visual: VisualInput, grid: ImageGrid, visionSide: VisionSideInputs?, budget: Int) {
        self.visual = visual
        self.grid = grid
        self.visionSide = visionSide
        self.budget = budget
    }
}
