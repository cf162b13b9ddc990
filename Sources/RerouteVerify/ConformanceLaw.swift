/// The laws of the conformance suite (SPEC.md §11.2). Each has a stable identifier (the raw
/// value, used in reports, `--json` and waivers) and a one-line statement.
public enum ConformanceLaw: String, Sendable, CaseIterable, Codable {
    case determinism
    case decisionsWellFormed = "decisions-well-formed"
    case indicesInGrid = "indices-in-grid"
    case noDuplicateIndices = "no-duplicate-indices"
    case keptIsProcessed = "kept-is-processed"
    case deferredStale = "deferred-stale"
    case topKTieBreak = "top-k-tie-break"
    case textNeverDropped = "text-never-dropped"
    case scheduleExecuted = "schedule-executed"
    case budgetDeclared = "budget-declared"
    case budgetMatching = "budget-matching"
    case tierDeclared = "tier-declared"
    case bypassIdentity = "bypass-identity"
    case noReadmission = "no-readmission"
    case positionsDeclared = "positions-declared"
    case noRoutingAtDecode = "no-routing-at-decode"
    case kvLength = "kv-length"
    case decodersAgree = "decoders-agree"
    case ratioOneIsDense = "ratio-one-is-dense"
    case positionOffsetInvariance = "position-offset-invariance"
    case prefixLengthInvariance = "prefix-length-invariance"
    case oneVisualToken = "one-visual-token"
    case equalScores = "equal-scores"
    case budgetZeroAndFull = "budget-zero-and-full"
    case mergesDeclared = "merges-declared"

    /// What the law states.
    public var statement: String {
        switch self {
        case .determinism:
            "Two runs on the same inputs give bitwise-identical traces, on each decoder, and so does the first case re-run after all others."
        case .decisionsWellFormed:
            "Every decision's candidates, kept and deferred are ascending, kept and deferred partition the candidates, |kept| = min(budget, |candidates|), one finite score per candidate."
        case .indicesInGrid:
            "Every candidate, kept and deferred index is a grid cell of the image that the LLM received (0 ≤ cell < rows·cols, and among the LLM's visual tokens)."
        case .noDuplicateIndices:
            "No decision lists a grid cell twice in its candidates, kept or deferred."
        case .keptIsProcessed:
            "The visual tokens every layer of a decision's stage processes (from its layer to the next decision) are exactly the decision's kept set."
        case .deferredStale:
            "A token a decision defers keeps, bit for bit, the hidden state it had entering the decision layer, through every layer of the stage."
        case .topKTieBreak:
            "Kept is the top-k of the recorded scores, ties broken by the lower grid index."
        case .textNeverDropped:
            "Every text token is processed at every layer."
        case .scheduleExecuted:
            "Decisions happen exactly at the declared layers with the declared budgets, and every layer processes the declared number of visual tokens."
        case .budgetDeclared:
            "The FLOPs and KV bytes of the executed layers equal the budget calculator's for the declared schedule, and the trace's budget group."
        case .budgetMatching:
            "A variant matched per layer to its base processes the base's visual count at every layer; one matched on avg_T has the base's avg_T within 1%."
        case .tierDeclared:
            "On LLaVA-1.5-7B's shape (32 layers, 576 visual tokens) the declared tier equals avg_T within 1%."
        case .bypassIdentity:
            "A visual token a layer does not process leaves that layer with a bit-identical hidden state."
        case .noReadmission:
            "Under deletion (or monotonic routing) a token a decision does not keep is never a candidate or processed again."
        case .positionsDeclared:
            "Processed tokens use the declared positions (original ids, or 0..<n after re-indexing) and decode continues at the declared position."
        case .noRoutingAtDecode:
            "Decode makes no decision: every layer's KV cache grows by exactly the fed decode tokens."
        case .kvLength:
            "Each layer's KV length after prefill equals the number of tokens it processed."
        case .decodersAgree:
            "The fast decoder agrees with the reference (routes equal or tie flips within ε then lockstep; tensors within fast-vs-reference tolerance)."
        case .ratioOneIsDense:
            "With every LLM-side keep ratio 1, the run equals the run without decisions bitwise."
        case .positionOffsetInvariance:
            "Adding a constant to every position id shifts the positions and changes no route, processed set, KV length or token, and no hidden state or logit beyond 1e-6 of its row scale (RoPE sees only differences; tie flips within 1e-9 are replayed in lockstep)."
        case .prefixLengthInvariance:
            "More text before the image changes no decision layer, budget, candidate count or per-layer visual count; KV lengths grow by the added tokens."
        case .oneVisualToken:
            "An image of one visual token runs and satisfies every trace law."
        case .equalScores:
            "When all scores are equal (a model with uniform attention), the first k candidates by index are kept."
        case .budgetZeroAndFull:
            "Keep ratios 0 (count rule ⌊·⌋) and 1 run and satisfy every trace law; ratio 0 processes no visual token after the decision, ratio 1 processes all."
        case .mergesDeclared:
            "A merge before the LLM is well formed (at most its budget of tokens, placement cells ascending, sources ascending cells of the grid, weights finite, ≥ 0, not all 0), and the LLM sees exactly the declared tokens: at their cells, each the declared combination bit for bit, with the position ids of its cell; every other cell is in no token."
        }
    }

    /// Laws checkable from one trace alone (`reroute conform --trace`).
    public static let traceLaws: [ConformanceLaw] = [
        .decisionsWellFormed, .indicesInGrid, .noDuplicateIndices, .keptIsProcessed, .deferredStale, .topKTieBreak, .textNeverDropped, .scheduleExecuted, .budgetDeclared, .bypassIdentity,
        .noReadmission, .positionsDeclared, .noRoutingAtDecode, .kvLength,
    ]
}

/// One input on which a law broke, with what was expected and what happened.
public struct LawFailure: Sendable, Codable, Equatable {
    /// The failing input: model, seed and case, enough to replay it.
    public var input: String
    /// Where in the run (e.g. `decision at layer 3`, `/prefill/positions[2]`).
    public var location: String
    public var expected: String
    public var actual: String

    public init(input: String, location: String, expected: String, actual: String) {
        self.input = input
        self.location = location
        self.expected = expected
        self.actual = actual
    }
}
