import RerouteModel

/// A pruner or router the suite can execute and check (SPEC.md §11, "Adding a pruner adapter").
///
/// An adapter **declares** its values in `policy` (scorer, schedule, count rule, action,
/// position policy, vision-side stage, budget matching) and **selects** at each decision.
/// `RoutingPolicy` is itself an adapter whose selection is top-k of its scorer's scores.
///
/// Contract (checked by `checkConformance`):
/// - `select` is a pure function of its input and the adapter's own values: no global or
///   mutable state, no clock, no unseeded randomness (determinism is checked bitwise);
/// - it only chooses among `input.candidates`; it never touches hidden states (it may read
///   them), positions, caches or text tokens, and it is never called during decode;
/// - it keeps exactly `min(input.budget, candidates.count)` candidates, ascending, and
///   returns one finite score per candidate (recorded in traces).
public protocol PrunerAdapter: Sendable {
    /// The declared values. `policy.name` names the adapter in traces and reports.
    var policy: RoutingPolicy { get }
    /// The selection at one decision.
    func select(_ input: SelectionInput) throws -> Selection
    /// The same adapter with other declared values (conformance varies keep ratios).
    func with(policy: RoutingPolicy) -> Self
    /// What the adapter claims, selecting which conformance laws apply.
    var capabilities: AdapterCapabilities { get }
    /// A merge before the LLM (SPEC.md §8.16): the tokens the LLM sees in place of the
    /// image's, or nil for none. Default: the declared vision-side stage's (Nüwa's stage 1 or
    /// VisionZip).
    /// A pure function of its input, like `select`.
    func mergeBeforeLLM(_ input: MergeInput) throws -> MergePlan?
    /// The most tokens `mergeBeforeLLM` may return for an image of `grid`. Default: the
    /// vision-side stage's K1, else every cell.
    func mergeBudget(grid: ImageGrid) -> Int
}

extension PrunerAdapter {
    public func mergeBeforeLLM(_ input: MergeInput) throws -> MergePlan? { try policy.visionSideMerge(input) }

    public func mergeBudget(grid: ImageGrid) -> Int { policy.visionSideBudget(grid: grid) ?? grid.count }

    /// The case the LLM sees: `c` after the adapter's merge before the LLM, if any; a plan
    /// that breaks the merge laws is refused before anything runs (`RoutingError.badSelection`
    /// at layer −1).
    public func llmCase(for c: PromptCase) throws -> PromptCase {
        let budget = mergeBudget(grid: c.grid)
        guard let plan = try mergeBeforeLLM(MergeInput(visual: c.visual, grid: c.grid, visionSide: c.visionSide, budget: budget)) else { return c }
        if let problem = plan.problem(grid: c.grid, budget: budget, cls: c.visionSide?.clsFeature != nil) { throw RoutingError.badSelection(adapter: policy.name, layer: -1, problem) }
        return try plan.apply(to: c)
    }
}

/// What an adapter claims about itself; conformance laws are selected from it.
public struct AdapterCapabilities: Sendable, Equatable, Codable {
    /// Kept = top-k of the returned scores with the suite's tie-break (score descending,
    /// then index ascending). Enables the tie-break and all-equal-scores laws.
    public var keepsTopKOfScores: Bool
    /// The scores are the policy's attention scorer's (`SelectionInput.attentionScores`).
    /// Enables the all-equal-scores law (a model with uniform attention makes them equal).
    public var scoresAreAttention: Bool
    /// The budget tier the adapter claims (avg_T on LLaVA-1.5-7B's shape), if any.
    public var tier: Tier?
    /// Laws the adapter does not claim, each with its reason.
    public var waivers: [Waiver]

    public init(keepsTopKOfScores: Bool, scoresAreAttention: Bool, tier: Tier? = nil, waivers: [Waiver] = []) {
        self.keepsTopKOfScores = keepsTopKOfScores
        self.scoresAreAttention = scoresAreAttention
        self.tier = tier
        self.waivers = waivers
    }
}

/// An explicit exemption from one conformance law.
public struct Waiver: Sendable, Equatable, Codable {
    /// The law's identifier (`ConformanceLaw.rawValue`).
    public var law: String
    public var reason: String

    public init(law: String, reason: String) {
        self.law = law
        self.reason = reason
    }
}

/// What a selector sees at one decision. Indices are LLM visual indices `0 ..< N'`
/// (positions in the visual span after any vision-side stage); `gridCells[j]` is the image
/// grid cell of LLM visual token j. Not `Sendable`: its probes read the decoder's state
/// of this decision and are valid only during `select`.
public struct SelectionInput {
    /// The decision layer (the first layer that runs with the kept tokens).
    public let layer: Int
    /// Index of the decision in the schedule.
    public let stage: Int
    /// The integer budget k of this stage.
    public let budget: Int
    /// Visual tokens that compete, ascending.
    public let candidates: [Int]
    public let grid: ImageGrid
    public let gridCells: [Int]
    /// Text tokens before the image (the rows of `textHiddenStates()` before `prefixCount` are
    /// these; the rest come after the image).
    public let prefixCount: Int
    let attention: () throws -> [Double]
    let hidden: () -> [[Double]]
    let textHidden: () -> [[Double]]
    let keysOfPreviousLayer: () throws -> (candidates: [[Double]], text: [[Double]])
    let finalNorm: ([[Double]]) throws -> [[Double]]

    public init(layer: Int, stage: Int, budget: Int, candidates: [Int], grid: ImageGrid, gridCells: [Int],
                attentionScores: @escaping () throws -> [Double], hiddenStates: @escaping () -> [[Double]],
                prefixCount: Int = 0, textHiddenStates: @escaping () -> [[Double]] = { [] },
                previousLayerKeys: @escaping () throws -> (candidates: [[Double]], text: [[Double]]) = {
                    throw RoutingError.badInput("this selection input offers no keys of the previous layer")
                },
                finalNorm: @escaping ([[Double]]) throws -> [[Double]] = { _ in
                    throw RoutingError.badInput("this selection input offers no final norm")
                }) {
        self.layer = layer
        self.stage = stage
        self.budget = budget
        self.candidates = candidates
        self.grid = grid
        self.gridCells = gridCells
        self.prefixCount = prefixCount
        attention = attentionScores
        hidden = hiddenStates
        textHidden = textHiddenStates
        keysOfPreviousLayer = previousLayerKeys
        self.finalNorm = finalNorm
    }

    /// The declared scorer's score of each candidate (SPEC.md §8.1), computed on demand.
    public func attentionScores() throws -> [Double] { try attention() }

    /// The hidden state entering the decision layer of each candidate, `[candidates][d]`
    /// (a deferred token's is the stale state it bypassed with). Read-only.
    public func hiddenStates() -> [[Double]] { hidden() }

    /// The hidden state entering the decision layer of every text token, `[text][d]`, in
    /// sequence order: the `prefixCount` tokens before the image, then those after it. Read-only.
    public func textHiddenStates() -> [[Double]] { textHidden() }

    /// The keys after RoPE that layer `layer − 1` cached for each candidate and each text token
    /// (text in the order of `textHiddenStates()`), `[rows][H_kv·d_head]`, heads concatenated.
    /// Throws at layer 0, and when a token was not processed by layer `layer − 1` (a deferred
    /// token has no key there). Read-only.
    public func previousLayerKeys() throws -> (candidates: [[Double]], text: [[Double]]) { try keysOfPreviousLayer() }

    /// The model's final RMSNorm (the LM head's input) of each row, `[rows][d]`.
    public func finalNormed(_ rows: [[Double]]) throws -> [[Double]] { try finalNorm(rows) }

    /// The number of tokens to keep: `min(budget, candidates.count)`.
    public var keepCount: Int { min(budget, candidates.count) }
}

/// An adapter's answer at one decision.
public struct Selection: Sendable, Equatable {
    /// Kept LLM visual indices, ascending, a subset of the candidates.
    public var kept: [Int]
    /// One finite score per candidate, in candidate order (recorded in the trace).
    public var scores: [Double]

    public init(kept: [Int], scores: [Double]) {
        self.kept = kept
        self.scores = scores
    }

    /// Top-k of `scores` with the suite's tie-break (§8.4).
    public static func topK(_ input: SelectionInput, scores: [Double]) throws -> Selection {
        let (kept, _) = try selectTopK(candidates: input.candidates, scores: scores, k: input.budget, layer: input.layer)
        return Selection(kept: kept, scores: scores)
    }

    /// Why this selection cannot be executed for `input`, or nil (checked by the session
    /// before any layer runs with it).
    public func problem(for input: SelectionInput) -> String? {
        if scores.count != input.candidates.count { return "\(scores.count) scores for \(input.candidates.count) candidates" }
        if let i = scores.firstIndex(where: { !$0.isFinite }) { return "score \(scores[i]) of candidate \(input.candidates[i]) is not finite" }
        if zip(kept, kept.dropFirst()).contains(where: { $0 >= $1 }) { return "kept \(kept.prefix(12)) is not strictly ascending" }
        let allowed = Set(input.candidates)
        if let j = kept.first(where: { !allowed.contains($0) }) { return "kept token \(j) is not a candidate" }
        if kept.count != input.keepCount { return "kept \(kept.count) tokens, the budget is \(input.keepCount)" }
        return nil
    }
}

extension RoutingPolicy: PrunerAdapter {
    public var policy: RoutingPolicy { self }

    /// Top-k of the declared scorer's scores, or the declared selection rule.
    public func select(_ input: SelectionInput) throws -> Selection {
        if let selection { return try selection.select(input) }
        return try Selection.topK(input, scores: try input.attentionScores())
    }

    public func with(policy: RoutingPolicy) -> RoutingPolicy { policy }

    public var capabilities: AdapterCapabilities {
        AdapterCapabilities(keepsTopKOfScores: selection == nil, scoresAreAttention: selection == nil)
    }
}
