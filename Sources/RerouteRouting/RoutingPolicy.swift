import RerouteModel

/// A pruner or router, composed of explicit values (SPEC.md §8): a scorer, a schedule
/// (decision layers given at a reference depth, keep ratios of the original N, a count
/// rule), an action, a position policy and an optional vision-side stage. No hooks.
public struct RoutingPolicy: Sendable, Equatable, Codable {
    /// Stable name, e.g. `fastv`, `reroute-pdrop`.
    public var name: String
    public var scorer: Scorer
    /// Decision layers at `referenceDepth` layers; remapped to the model's depth (§8.3).
    public var decisionLayers: [Int]
    public var referenceDepth: Int
    /// Keep ratio of the original N at each decision (empty when `keepCounts` is given).
    public var keepRatios: [Double]
    /// Integer budgets per decision instead of ratios (policy files; nil: from `keepRatios`).
    /// Each is clipped to the visual tokens entering the LLM.
    public var keepCounts: [Int]?
    /// Where the policy comes from (paper, code, commit), for people; not used by the run.
    public var provenance: String?
    public var countRule: CountRule
    public var action: RoutingAction
    public var positions: PositionPolicy
    /// Nüwa's stage 1, applied to the image before the LLM.
    public var visionStage: NuwaVisionStage?
    /// VisionZip, applied to the image before the LLM (at most one vision-side stage).
    public var visionZip: VisionZipStage?
    /// How the kept tokens are chosen (nil: top-k of the scorer's scores, §8.4).
    public var selection: SelectionRule?
    public var budgetMatching: BudgetMatching

    public init(name: String, scorer: Scorer, decisionLayers: [Int], referenceDepth: Int = LayerRemap.referenceDepth,
                keepRatios: [Double], countRule: CountRule, action: RoutingAction, positions: PositionPolicy,
                visionStage: NuwaVisionStage? = nil, budgetMatching: BudgetMatching = .none) {
        self.name = name
        self.scorer = scorer
        self.decisionLayers = decisionLayers
        self.referenceDepth = referenceDepth
        self.keepRatios = keepRatios
        self.countRule = countRule
        self.action = action
        self.positions = positions
        self.visionStage = visionStage
        self.budgetMatching = budgetMatching
    }

    /// The same policy with every decision keeping the fraction `ratio` of the original N
    /// (integer counts replaced by ratios).
    public func withEveryKeepRatio(_ ratio: Double) -> RoutingPolicy {
        var p = self
        p.keepRatios = decisionLayers.map { _ in ratio }
        p.keepCounts = nil
        return p
    }

    /// Whether the policy makes no decision inside the LLM (a vision-side stage may still
    /// reduce the image before it).
    public var isDense: Bool { decisionLayers.isEmpty }

    /// The most visual tokens the vision-side stage hands the LLM on `grid`, or nil without one.
    public func visionSideBudget(grid: ImageGrid) -> Int? {
        visionStage?.budget(grid: grid) ?? visionZip?.budget(grid: grid)
    }

    /// The vision-side stage as a merge before the LLM (SPEC.md §8.16), or nil without one.
    public func visionSideMerge(_ input: MergeInput) throws -> MergePlan? {
        guard visionStage != nil || visionZip != nil else { return nil }
        let method = visionStage != nil ? "Nüwa stage 1" : "VisionZip"
        guard case .features(let x) = input.visual else { throw RoutingError.badInput("\(method) needs vision features, not embeddings") }
        guard let side = input.visionSide else { throw RoutingError.badInput("\(method) needs the case's vision-side inputs") }
        if let stage = visionStage { return try stage.mergePlan(features: x, inputs: side, grid: input.grid) }
        return try visionZip?.mergePlan(features: x, inputs: side, grid: input.grid)
    }

    /// Whether the policy is defined for 1-D positions only: re-indexed positions, or a
    /// vision-side stage that numbers the LLM sequence contiguously (VisionZip).
    public var requiresOneDimensionalPositions: Bool { positions == .reindexed || visionZip != nil }

    /// The integer schedule for a model of `layers` layers and `n` visual tokens entering
    /// the LLM (after the vision stage, if any). Counts come from ratios of `originalN`
    /// (the image's token count before any stage).
    public func schedule(layers: Int, originalN: Int, llmN: Int) throws -> Schedule {
        try validate()
        let mapped = layers == referenceDepth ? decisionLayers : try LayerRemap.remap(decisionLayers, from: referenceDepth, to: layers)
        if let bad = mapped.first(where: { $0 < 0 || $0 >= layers }) {
            throw RoutingError.badSchedule("decision layer \(bad) outside 0 ..< \(layers)")
        }
        let counts = keepCounts.map { $0.map { min(llmN, max(0, $0)) } }
            ?? keepRatios.map { min(llmN, countRule.count(of: originalN, ratio: $0)) }
        return Schedule(decisionLayers: mapped, counts: counts)
    }

    /// Largest reference depth (the `num_hidden_layers` cap) and keep count / query rows
    /// (a case's sequence limit).
    public static let maxDepth = 1024
    public static let maxKeepCount = 1 << 16

    /// Refuses a grid the policy is not defined for: a video under Nüwa's image stage or a
    /// selection rule defined for one image (`SelectionRule.check(grid:)`).
    public func check(grid: ImageGrid) throws {
        if visionStage != nil { try NuwaVisionStage.checkImage(grid) }
        if visionZip != nil { try VisionZipStage.check(grid: grid) }
        try selection?.check(grid: grid)
    }

    /// Checks the combination of values is one the suite can execute.
    public func validate() throws {
        // Bounds first: the remap multiplies and divides by these (SPEC.md §12).
        if !(1...RoutingPolicy.maxDepth).contains(referenceDepth) {
            throw RoutingError.badSchedule("\(name): reference depth \(referenceDepth) outside 1…\(RoutingPolicy.maxDepth)")
        }
        if let l = decisionLayers.first(where: { !(0..<referenceDepth).contains($0) }) {
            throw RoutingError.badSchedule("\(name): decision layer \(l) outside 0 ..< \(referenceDepth) (the reference depth)")
        }
        if decisionLayers.first == 0, selection == nil, scorer.attention == .producedByPreviousLayer {
            throw RoutingError.badSchedule("\(name): a decision at layer 0 (the LLM input) has no previous layer whose attention it could read")
        }
        if let c = keepCounts?.first(where: { $0 > RoutingPolicy.maxKeepCount }) {
            throw RoutingError.badSchedule("\(name): keep count \(c) above \(RoutingPolicy.maxKeepCount)")
        }
        if case .lastRows(let k) = scorer.query, k > RoutingPolicy.maxKeepCount {
            throw RoutingError.badSchedule("\(name): lastRows(\(k)) above \(RoutingPolicy.maxKeepCount)")
        }
        if let v = visionStage, !(v.keepRatio > 0 && v.keepRatio <= 1) || !(1...4).contains(v.perRegion) || !(v.penaltyQuantile >= 0 && v.penaltyQuantile <= 1) {
            throw RoutingError.badSchedule("\(name): vision stage keep ratio \(v.keepRatio), per region \(v.perRegion), quantile \(v.penaltyQuantile) outside (0, 1], 1…4, [0, 1]")
        }
        if visionStage != nil, visionZip != nil { throw RoutingError.badSchedule("\(name): two vision-side stages (Nüwa's and VisionZip)") }
        if let z = visionZip, !(z.dominantRatio > 0 && z.dominantRatio <= 1) || !(z.contextualRatio >= 0 && z.contextualRatio <= 1) {
            throw RoutingError.badSchedule("\(name): VisionZip ratios \(z.dominantRatio), \(z.contextualRatio) outside (0, 1], [0, 1]")
        }
        if let counts = keepCounts {
            if !keepRatios.isEmpty { throw RoutingError.badSchedule("\(name): both keep ratios and keep counts") }
            if decisionLayers.count != counts.count {
                throw RoutingError.badSchedule("\(name): \(decisionLayers.count) decision layers, \(counts.count) keep counts")
            }
            if let c = counts.first(where: { $0 < 0 }) { throw RoutingError.badSchedule("\(name): keep count \(c) below 0") }
        } else if decisionLayers.count != keepRatios.count {
            throw RoutingError.badSchedule("\(name): \(decisionLayers.count) decision layers, \(keepRatios.count) keep ratios")
        }
        for (a, b) in zip(decisionLayers, decisionLayers.dropFirst()) where b <= a {
            throw RoutingError.badSchedule("\(name): decision layers \(decisionLayers) are not strictly increasing")
        }
        if let r = keepRatios.first(where: { !($0 >= 0 && $0 <= 1) }) {
            throw RoutingError.badSchedule("\(name): keep ratio \(r) outside [0, 1]")
        }
        if positions != .original, action != .delete {
            throw RoutingError.badSchedule("\(name): \(positions == .reindexed ? "re-indexed" : "recomputed") positions need the delete action (routed tokens keep theirs)")
        }
        if case .lastRows(let k) = scorer.query, k < 1 { throw RoutingError.badSchedule("\(name): lastRows(\(k))") }
        if action == .route(monotonic: false), scorer.domain == .activeTokens || scorer.attention == .producedByPreviousLayer {
            throw RoutingError.badSchedule("\(name): non-monotonic routing re-scores deferred tokens, so its softmax must cover all tokens of the decision layer's input")
        }
    }
}
