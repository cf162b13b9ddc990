// The adapter of docs/adding-an-adapter.md §2, as written there (a test keeps the two identical),
// so the guide's example is compiled in a separate target against the public API.
import RerouteRouting

public struct MyAdapter: PrunerAdapter {
    public var policy: RoutingPolicy
    // A separate target needs a public init: the memberwise one is internal.
    public init(policy: RoutingPolicy) { self.policy = policy }
    public var capabilities: AdapterCapabilities {
        AdapterCapabilities(keepsTopKOfScores: true, scoresAreAttention: false)
    }
    public func with(policy: RoutingPolicy) -> MyAdapter { var a = self; a.policy = policy; return a }

    public func select(_ input: SelectionInput) throws -> Selection {
        let h = input.hiddenStates()               // [candidates][d], read-only copies
        let scores = h.map { row in row.map { $0 * $0 }.reduce(0, +) }   // e.g. L2 energy
        return try Selection.topK(input, scores: scores)   // the suite's tie-break
    }
}
