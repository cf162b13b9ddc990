import RerouteRouting

/// What one visual token (grid cell) does during a stage of a routed run.
public enum CellRoute: String, Sendable, Codable, CaseIterable {
    /// Processed by the stage's layers, as in the stage before.
    case processed
    /// Processed again after being deferred.
    case reentered
    /// Bypassing the stage (routed past it; may compete again).
    case deferred
    /// Gone for good: deleted by a decision, or dropped by a vision-side stage.
    case removed
}

/// One stage of a trace's routes: the layers before the first decision, or one decision's
/// layers (up to the next decision), with every grid cell's route.
public struct RouteStage: Sendable, Equatable, Codable {
    public var firstLayer: Int
    public var lastLayer: Int
    /// The decision's budget k (nil for the layers before the first decision).
    public var budget: Int?
    /// Route of each grid cell, row-major (`cell = row · cols + col`, visual index space).
    public var cells: [CellRoute]

    public func count(_ r: CellRoute) -> Int { cells.filter { $0 == r }.count }
}

extension Trace {
    /// The route map of the run: one stage before the first decision (none when it is at
    /// the LLM input, layer 0), then one per decision.
    public var routeStages: [RouteStage] {
        let grid = input.grid
        let llmCells = Set(llmGridIndices ?? Array(0..<grid.count))
        let firstDecision = decisions.first?.layer ?? config.layers
        var stages = firstDecision == 0 ? [] : [RouteStage(firstLayer: 0, lastLayer: firstDecision - 1, budget: nil,
                                                           cells: (0..<grid.count).map { llmCells.contains($0) ? .processed : .removed })]
        var processed = llmCells
        var removed = Set(0..<grid.count).subtracting(llmCells)
        for (i, d) in decisions.enumerated() {
            let end = i + 1 < decisions.count ? decisions[i + 1].layer - 1 : config.layers - 1
            let kept = Set(d.kept)
            if policy.action == .delete { removed.formUnion(d.deferred) }
            let cells: [CellRoute] = (0..<grid.count).map { cell in
                if kept.contains(cell) { return processed.contains(cell) ? .processed : .reentered }
                return removed.contains(cell) ? .removed : .deferred
            }
            processed = kept
            stages.append(RouteStage(firstLayer: d.layer, lastLayer: end, budget: d.budget, cells: cells))
        }
        return stages
    }
}
