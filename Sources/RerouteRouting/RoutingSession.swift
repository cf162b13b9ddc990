import RerouteModel

/// Turns a policy into per-layer plans during one prefill (SPEC.md §8.7). It holds the
/// routing state (which visual tokens are active, which were deleted), asks the decoder for
/// attention probabilities at decision layers, decides, and records every decision.
///
/// Visual indices inside the session are positions in the LLM's visual span (0 ..< N_llm);
/// recorded decisions use grid cells of the original image (`PromptCase.gridIndices`).
public struct RoutingSession: Sendable {
    /// The adapter that selects; `policy` holds its declared values.
    public let adapter: any PrunerAdapter
    public var policy: RoutingPolicy { adapter.policy }
    public let schedule: Schedule
    /// The LLM-side case (after any vision-side stage).
    public let llmCase: PromptCase
    public private(set) var decisions: [RoutingDecision] = []
    public private(set) var plans: [LayerPlan] = []

    /// Lockstep replay: kept grid cells forced per decision layer (scores are still computed
    /// and recorded; only the selection is taken from here).
    public let forcedKept: [Int: [Int]]

    let prefixCount: Int
    let visualCount: Int
    let sequenceLength: Int
    var visualActive: [Int]
    var alive: [Bool]

    /// - Parameters:
    ///   - originalN: visual tokens of the image before any vision-side stage (ratios are of it).
    public init(adapter: any PrunerAdapter, llmCase: PromptCase, layers: Int, originalN: Int, forcedKept: [Int: [Int]] = [:]) throws {
        self.adapter = adapter
        let policy = adapter.policy
        if policy.positions == .reindexed, llmCase.positions.isMultimodal {
            throw RoutingError.badSchedule("\(policy.name): re-indexed positions are defined for 1-D RoPE; this case has 3-D M-RoPE positions (keep the original ones)")
        }
        if policy.positions.requiresMultimodal, !llmCase.positions.isMultimodal {
            throw RoutingError.badSchedule("\(policy.name): positions \(policy.positions.rawValue) are defined for 3-D M-RoPE; this case has 1-D positions")
        }
        self.forcedKept = forcedKept
        self.llmCase = llmCase
        schedule = try policy.schedule(layers: layers, originalN: originalN, llmN: llmCase.visual.count)
        let cells = llmCase.gridIndices
        if !schedule.decisionLayers.isEmpty, zip(cells, cells.dropFirst()).contains(where: { $0 >= $1 }) {
            // Decisions record grid cells as ascending candidates; a listed layout has no such order.
            throw RoutingError.badSchedule("\(policy.name): decisions in the LLM after a merge listed out of grid order (\(cells.prefix(8))…) are not supported")
        }
        prefixCount = llmCase.prefixTokens.count
        visualCount = llmCase.visual.count
        sequenceLength = llmCase.sequenceLength
        visualActive = Array(0..<visualCount)
        alive = Array(repeating: true, count: visualCount)
    }

    /// What the LLM input holds: every token, the case's positions (the plan before any decision).
    var inputPlan: LayerPlan {
        LayerPlan(active: Array(0..<sequenceLength), positions: llmCase.positions, decodePosition: llmCase.positions.nextDecodePosition)
    }

    var textTokens: [Int] { Array(0..<prefixCount) + Array((prefixCount + visualCount)..<sequenceLength) }

    func sequenceIndices(visual: [Int]) -> [Int] {
        (Array(0..<prefixCount) + visual.map { prefixCount + $0 } + Array((prefixCount + visualCount)..<sequenceLength))
    }

    public init(policy: RoutingPolicy, llmCase: PromptCase, layers: Int, originalN: Int, forcedKept: [Int: [Int]] = [:]) throws {
        try self.init(adapter: policy, llmCase: llmCase, layers: layers, originalN: originalN, forcedKept: forcedKept)
    }

    /// A session whose decisions only read attention (no hidden states); tests drive it by hand.
    public mutating func plan(layer l: Int, probe: @escaping (ScoreRequest) -> [[[Double]]]) throws -> LayerPlan {
        try plan(layer: l, probe: DecisionProbe(attention: probe, hiddenStates: { layer, _ in
            preconditionFailure("RoutingSession: hidden states of layer \(layer) requested from an attention-only probe")
        }))
    }

    /// The plan of layer `l` (layers must be planned in order 0, 1, …). At a decision layer
    /// `probe` answers the adapter's questions against the decoder's current state.
    public mutating func plan(layer l: Int, probe: DecisionProbe) throws -> LayerPlan {
        precondition(plans.count == l, "RoutingSession: layer \(l) planned out of order")
        let plan: LayerPlan
        if let t = schedule.decisionLayers.firstIndex(of: l) {
            let decision = try decide(layer: l, stage: t, probe: probe)
            decisions.append(decision)
            plan = layout(visual: visualActive)
        } else {
            plan = plans.last ?? inputPlan
        }
        plans.append(plan)
        return plan
    }

    /// Active tokens = all text + the given visual tokens, with positions per the policy.
    func layout(visual: [Int]) -> LayerPlan {
        let active = sequenceIndices(visual: visual)
        let (positions, decode) = policy.positions.layout(active: active, positions: llmCase.positions,
                                                          visualSpan: llmCase.visualSpan.range, grid: llmCase.grid)
        return LayerPlan(active: active, positions: positions, decodePosition: decode)
    }

    mutating func decide(layer l: Int, stage t: Int, probe: DecisionProbe) throws -> RoutingDecision {
        // At the LLM input (layer 0) the tokens compete as the case gives them.
        let previous = plans.last ?? inputPlan
        let candidates: [Int]
        switch policy.action {
        case .delete, .route(monotonic: true): candidates = visualActive
        case .route(monotonic: false): candidates = (0..<visualCount).filter { alive[$0] }
        }
        // The softmax domain and the positions its keys are rotated with.
        var scoringLayer = l
        var keys = previous.active
        var keyPositions = previous.positions
        switch (policy.scorer.attention, policy.scorer.domain) {
        case (.producedByPreviousLayer, _):
            scoringLayer = l - 1  // l ≥ 1: validate() refuses this scorer at layer 0
        case (.decisionLayerInput, .activeTokens):
            break
        case (.decisionLayerInput, .allTokens):
            let all = sequenceIndices(visual: (0..<visualCount).filter { alive[$0] })
            // Deferred tokens keep the positions they were last processed with: the case's own
            // (routing never re-indexes), so each key takes the current plan's column, else the case's.
            let current = Dictionary(uniqueKeysWithValues: previous.active.enumerated().map { ($1, $0) })
            let original = llmCase.positions
            keys = all
            keyPositions = PositionIDs(axes: (0..<original.axisCount).map { a in
                all.map { t in current[t].map { previous.positions.axes[a][$0] } ?? original.axes[a][t] }
            })
        }
        let keyIndex = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, $0) })
        let queryRows: [Int]
        switch policy.scorer.query {
        case .lastToken, .lastInstructionToken:
            // The last suffix token: the last token of the sequence, never dropped.
            queryRows = [keys.count - 1]
        case .lastRows(let k):
            queryRows = Array(max(0, keys.count - k)..<keys.count)
        }
        let request = ScoreRequest(layer: scoringLayer, keys: keys, keyPositions: keyPositions, queryRows: queryRows)
        let (prefixCount, policy) = (prefixCount, policy)
        let attentionScores = { () throws -> [Double] in
            let probabilities = probe.attention(request)
            return try candidates.map { j in
                guard let col = keyIndex[prefixCount + j] else {
                    throw RoutingError.badInput("\(policy.name): candidate \(j) is not among the keys scored at layer \(l)")
                }
                let perHead = (0..<probabilities[0].count).map { h in
                    probabilities.reduce(0.0) { $0 + $1[h][col] } / Double(probabilities.count)
                }
                switch policy.scorer.heads {
                case .mean: return perHead.reduce(0, +) / Double(perHead.count)
                case .max: return perHead.max() ?? 0
                }
            }
        }
        let k = schedule.counts[t]
        // Layer l − 1's cached keys: its rows, with the positions that layer processed them with.
        let previousLayerKeys = { [textTokens] () throws -> (candidates: [[Double]], text: [[Double]]) in
            guard l > 0 else { throw RoutingError.badInput("\(policy.name): keys of the previous layer requested at layer 0, which has none") }
            let column = Dictionary(uniqueKeysWithValues: previous.active.enumerated().map { ($1, $0) })
            let candidateRows = candidates.map { prefixCount + $0 }
            let rows = candidateRows + textTokens
            let columns = try rows.map { r in
                guard let c = column[r] else {
                    throw RoutingError.badInput("\(policy.name): token \(r) was not processed by layer \(l - 1), so it has no key there")
                }
                return c
            }
            let keys = try probe.keys(l - 1, rows, previous.positions.gathering(columns))
            return (Array(keys[..<candidateRows.count]), Array(keys[candidateRows.count...]))
        }
        let input = SelectionInput(layer: l, stage: t, budget: k, candidates: candidates, grid: llmCase.grid,
                                   gridCells: llmCase.gridIndices, attentionScores: attentionScores,
                                   hiddenStates: { probe.hiddenStates(l, candidates.map { prefixCount + $0 }) },
                                   prefixCount: prefixCount, textHiddenStates: { [textTokens] in probe.hiddenStates(l, textTokens) },
                                   previousLayerKeys: previousLayerKeys, finalNorm: probe.finalNormed)
        let selection = try adapter.select(input)
        if let problem = selection.problem(for: input) { throw RoutingError.badSelection(adapter: policy.name, layer: l, problem) }
        let scores = selection.scores
        var kept = selection.kept
        var deferred = candidates.filter { [keptSet = Set(kept)] in !keptSet.contains($0) }
        if let forced = forcedKept[l] {
            let cell = Dictionary(uniqueKeysWithValues: llmCase.gridIndices.enumerated().map { ($1, $0) })
            let forcedLLM = forced.compactMap { cell[$0] }
            guard forcedLLM.count == forced.count, Set(forcedLLM).isSubset(of: candidates), forcedLLM.count == kept.count else {
                throw RoutingError.badInput("\(policy.name): forced route at layer \(l) (\(forced.count) tokens) is not \(kept.count) of the candidates")
            }
            kept = forcedLLM.sorted()
            deferred = candidates.filter { [forcedSet = Set(forcedLLM)] in !forcedSet.contains($0) }
        }
        if policy.action == .delete { for j in deferred { alive[j] = false } }
        visualActive = kept
        let grid = llmCase.gridIndices
        return RoutingDecision(layer: l, candidates: candidates.map { grid[$0] }, kept: kept.map { grid[$0] },
                               deferred: deferred.map { grid[$0] }, scores: scores, budget: k)
    }
}

/// How a session asks the decoder about its current state at a decision.
public struct DecisionProbe {
    /// Answers a score request (`LayerwiseDecoder.attentionProbabilities`).
    public var attention: (ScoreRequest) -> [[[Double]]]
    /// Hidden states entering a layer for the given sequence rows (`LayerwiseDecoder.hiddenStates`).
    public var hiddenStates: (_ layer: Int, _ rows: [Int]) -> [[Double]]

    /// Keys after RoPE of a layer for the given sequence rows at the given positions
    /// (`LayerwiseDecoder.rotatedKeys`).
    public var keys: (_ layer: Int, _ rows: [Int], _ positions: PositionIDs) throws -> [[Double]]
    /// The final RMSNorm of rows (`LayerwiseDecoder.finalNormed`).
    public var finalNormed: ([[Double]]) throws -> [[Double]]

    /// A probe without `keys` or `finalNormed` answers them by throwing (a session driven by
    /// attention and hidden states only).
    public init(attention: @escaping (ScoreRequest) -> [[[Double]]], hiddenStates: @escaping (_ layer: Int, _ rows: [Int]) -> [[Double]],
                keys: ((_ layer: Int, _ rows: [Int], _ positions: PositionIDs) throws -> [[Double]])? = nil,
                finalNormed: (([[Double]]) throws -> [[Double]])? = nil) {
        self.attention = attention
        self.hiddenStates = hiddenStates
        self.keys = keys ?? { layer, _, _ in throw RoutingError.badInput("this probe offers no keys (layer \(layer) requested)") }
        self.finalNormed = finalNormed ?? { _ in throw RoutingError.badInput("this probe offers no final norm") }
    }
}

/// Everything a routed prefill decided and executed.
public struct RoutingRecord: Sendable {
    public var policy: RoutingPolicy
    public var schedule: Schedule
    /// The case the LLM saw (after the vision-side stage).
    public var llmCase: PromptCase
    public var decisions: [RoutingDecision]
    /// The executed plan of every layer.
    public var plans: [LayerPlan]
}

/// Runs a routed prefill on any layer-wise decoder: the vision-side stage (if any), then
/// for each layer the session plans and the decoder executes.
public enum RoutedPrefill {
    /// The work before the first layer: the vision-side stage, the session, the embedded input.
    public struct Prepared<D: LayerwiseDecoder> {
        public var session: RoutingSession
        public var state: D.State
    }

    /// - Parameter forcedKept: lockstep replay; kept grid cells per decision layer.
    /// - Parameter onLayer: called after each layer ran, with its index (progress of long runs).
    public static func run<D: LayerwiseDecoder>(decoder: D, case c: PromptCase, adapter: some PrunerAdapter,
                                                forcedKept: [Int: [Int]] = [:], onLayer: ((Int) -> Void)? = nil) throws
        -> (state: D.State, record: RoutingRecord)
    {
        try execute(decoder: decoder, try prepare(decoder: decoder, case: c, adapter: adapter, forcedKept: forcedKept), onLayer: onLayer)
    }

    public static func run<D: LayerwiseDecoder>(decoder: D, case c: PromptCase, policy: RoutingPolicy, forcedKept: [Int: [Int]] = [:])
        throws -> (state: D.State, record: RoutingRecord)
    {
        try run(decoder: decoder, case: c, adapter: policy, forcedKept: forcedKept)
    }

    public static func prepare<D: LayerwiseDecoder>(decoder: D, case c: PromptCase, policy: RoutingPolicy,
                                                    forcedKept: [Int: [Int]] = [:]) throws -> Prepared<D> {
        try prepare(decoder: decoder, case: c, adapter: policy, forcedKept: forcedKept)
    }

    public static func prepare<D: LayerwiseDecoder>(decoder: D, case c: PromptCase, adapter: some PrunerAdapter,
                                                    forcedKept: [Int: [Int]] = [:]) throws -> Prepared<D> {
        let llmCase = try adapter.llmCase(for: c)
        let session = try RoutingSession(adapter: adapter, llmCase: llmCase, layers: decoder.config.layers, originalN: c.grid.count,
                                         forcedKept: forcedKept)
        let counts = session.schedule.visualCounts(n: llmCase.visual.count, layers: decoder.config.layers)
        let text = llmCase.sequenceLength - llmCase.visual.count
        let state = try decoder.begin(llmCase, kvCapacity: counts.map { text + $0 + max(0, c.decodeSteps - 1) })
        return Prepared(session: session, state: state)
    }

    /// Every layer: the session plans (asking the decoder for scores at decision layers),
    /// the decoder executes.
    public static func execute<D: LayerwiseDecoder>(decoder: D, _ prepared: Prepared<D>, onLayer: ((Int) -> Void)? = nil) throws
        -> (state: D.State, record: RoutingRecord)
    {
        var session = prepared.session
        var state = prepared.state
        for l in 0..<decoder.config.layers {
            let current = state
            // What the last score request for this layer computed, handed to its run.
            var reuse: D.ScoreReuse?
            let probe = DecisionProbe(attention: { request in
                                          let answer = decoder.attentionProbabilities(request, state: current)
                                          reuse = request.layer == l ? answer.reuse : nil
                                          return answer.probabilities
                                      },
                                      hiddenStates: { decoder.hiddenStates(entering: $0, rows: $1, state: current) },
                                      keys: { decoder.rotatedKeys(layer: $0, rows: $1, positions: $2, state: current) },
                                      finalNormed: { decoder.finalNormed($0) })
            let plan = try session.plan(layer: l, probe: probe)
            decoder.run(layer: l, plan: plan, state: &state, reusing: reuse)
            onLayer?(l)
        }
        return (state, RoutingRecord(policy: session.policy, schedule: session.schedule, llmCase: session.llmCase,
                                     decisions: session.decisions, plans: session.plans))
    }
}
