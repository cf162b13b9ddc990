// The merging adapter of docs/adding-an-adapter.md §5, as written there (a test keeps the two
// identical), compiled in a separate target against the public API.
import RerouteModel
import RerouteRouting

/// Before the LLM, each pair of horizontally adjacent cells becomes one token, their mean,
/// placed at the left cell (a last odd column is kept as it is); in the LLM, the declared
/// policy's top-k of attention.
public struct PairMergingAdapter: PrunerAdapter {
    public var policy: RoutingPolicy
    public init(policy: RoutingPolicy) { self.policy = policy }
    public var capabilities: AdapterCapabilities {
        AdapterCapabilities(keepsTopKOfScores: true, scoresAreAttention: true)
    }
    public func with(policy: RoutingPolicy) -> PairMergingAdapter { var a = self; a.policy = policy; return a }

    public func mergeBudget(grid: ImageGrid) -> Int { grid.frames * grid.rows * ((grid.cols + 1) / 2) }

    public func mergeBeforeLLM(_ input: MergeInput) throws -> MergePlan? {
        let g = input.grid
        var tokens: [MergedToken] = []
        for row in 0..<(g.frames * g.rows) {
            for col in stride(from: 0, to: g.cols, by: 2) {
                let left = row * g.cols + col
                tokens.append(col + 1 < g.cols ? MergedToken(cell: left, sources: [left, left + 1], weights: [0.5, 0.5]) : .kept(left))
            }
        }
        return MergePlan(tokens: tokens)
    }

    public func select(_ input: SelectionInput) throws -> Selection {
        try Selection.topK(input, scores: try input.attentionScores())
    }
}
