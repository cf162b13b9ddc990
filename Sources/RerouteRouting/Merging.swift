import RerouteModel

/// A token the LLM sees in place of the image tokens it combines (SPEC.md §8.16): the vector
/// `Σ_s weights[s] · x[sources[s]]` over the vision-side vectors x of its source grid cells,
/// placed at grid cell `cell` (it takes that cell's place in the sequence and its position
/// ids). A token kept as it is has `sources == [cell]` and `weights == [1]`.
public struct MergedToken: Sendable, Equatable, Codable {
    /// The grid cell whose sequence slot and position ids the token takes.
    public var cell: Int
    /// Grid cells combined, strictly ascending.
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

/// What a reduction before the LLM returns (SPEC.md §8.16): the tokens the LLM sees, by
/// ascending placement cell. A grid cell is then kept (a token of its own, unchanged), merged
/// (a source of one or more tokens, with the weights stated), or dropped (in no token).
public struct MergePlan: Sendable, Equatable, Codable {
    public var tokens: [MergedToken]

    public init(tokens: [MergedToken]) { self.tokens = tokens }

    /// Placement cells, ascending: the LLM-side case's `visualGridIndices`.
    public var cells: [Int] { tokens.map(\.cell) }

    /// Grid cells in no token.
    public func dropped(grid: ImageGrid) -> [Int] {
        let used = Set(tokens.flatMap(\.sources))
        return (0..<grid.count).filter { !used.contains($0) }
    }

    /// Why the plan breaks the merge laws for a grid and budget, or nil: at most `budget`
    /// tokens; placement cells strictly ascending, in the grid; each token's sources strictly
    /// ascending cells of the grid with one finite weight ≥ 0 each, not all 0.
    public func problem(grid: ImageGrid, budget: Int) -> String? {
        if tokens.count > budget { return "\(tokens.count) tokens, the budget is \(budget)" }
        if tokens.isEmpty { return "no token" }
        let cells = self.cells
        if zip(cells, cells.dropFirst()).contains(where: { $0 >= $1 }) { return "placement cells \(cells.prefix(12)) are not strictly ascending" }
        for t in tokens {
            guard (0..<grid.count).contains(t.cell) else { return "token at cell \(t.cell) is outside the \(grid.description) grid" }
            guard !t.sources.isEmpty, t.sources.count == t.weights.count else {
                return "token at cell \(t.cell): \(t.sources.count) sources, \(t.weights.count) weights"
            }
            if zip(t.sources, t.sources.dropFirst()).contains(where: { $0 >= $1 }) || !(0..<grid.count).contains(t.sources[0])
                || !(0..<grid.count).contains(t.sources.last!) {
                return "token at cell \(t.cell): sources \(t.sources.prefix(12)) are not strictly ascending cells of the grid"
            }
            if let w = t.weights.first(where: { !$0.isFinite || $0 < 0 }) { return "token at cell \(t.cell): weight \(w) is not finite and ≥ 0" }
            if t.weights.allSatisfy({ $0 == 0 }) { return "token at cell \(t.cell): every weight is 0" }
        }
        return nil
    }

    /// The tokens' vectors from the vision-side vectors `x` (`[grid cells][width]`): for each
    /// token and column, `Σ_s w_s · x[source_s]` accumulated in Double over the sources in
    /// ascending order, skipping zero weights, then rounded to Float.
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

    /// The LLM-side case: the tokens' vectors in place of the image's, at their placement
    /// cells, with the position ids of those cells (sliced, never recomputed).
    public func apply(to c: PromptCase) throws -> PromptCase {
        guard c.visualGridIndices == nil else { throw RoutingError.badInput("a merge before the LLM needs the full image") }
        let p = c.prefixTokens.count
        let kept = Array(0..<p) + cells.map { p + $0 } + Array((p + c.visual.count)..<c.sequenceLength)
        var out = c
        switch c.visual {
        case .features(let x): out.visual = .features(apply(to: x))
        case .embeddings(let x): out.visual = .embeddings(apply(to: x))
        }
        out.visualGridIndices = cells
        out.positions = c.positions.gathering(kept)
        return out
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
