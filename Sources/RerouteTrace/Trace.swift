import RerouteModel
import RerouteRouting

/// How a trace dataset is compared (its `compare` attribute, SPEC.md §9).
public enum CompareKind: String, Sendable, Codable {
    /// Floating point within a tolerance (§7).
    case float
    /// Equal element by element (integers, positions, tokens).
    case exact
    /// Equal as sets (routes); differences reported with Jaccard distance.
    case set
    /// Bit-identical (inputs).
    case bitwise
}

/// How a trace's routes were made.
public enum TraceMode: String, Sendable, Codable, CaseIterable {
    /// Decided by the run.
    case free
    /// Forced from another trace (lockstep replay, SPEC.md §9.2).
    case lockstep
}

/// Where a trace came from.
public struct TraceProvenance: Sendable, Equatable {
    public var producer: String
    public var producerVersion: String
    /// Git commit of the producer when known, else "unknown".
    public var producerCommit: String
    /// "reference", "fast", "transformers", …
    public var decoder: String
    public var mode: TraceMode
    public var model: String
    public var seed: Int
    /// The arithmetic the producer computed in (`float64`, `float32`, `bfloat16`, `float16`;
    /// `/@dtype`, optional: absent in traces that predate it, then known from `decoder`).
    public var dtype: String?
    /// The vector path the producer's kernels ran (`/@isa`, optional: `portable`, `avx2`,
    /// `avx512` for the fast decoder; other producers may name theirs). Informational: never compared.
    public var isa: String?

    public init(producer: String = "reroute", producerVersion: String = Trace.producerVersion, producerCommit: String = "unknown",
                decoder: String, mode: TraceMode = .free, model: String, seed: Int, dtype: String? = nil, isa: String? = nil) {
        self.isa = isa
        self.producer = producer
        self.producerVersion = producerVersion
        self.producerCommit = producerCommit
        self.decoder = decoder
        self.mode = mode
        self.model = model
        self.seed = seed
        self.dtype = dtype
    }
}

/// One run of one policy on one case: everything needed to check it again (SPEC.md §9).
///
/// Sequence indices below are those of the LLM-side sequence (after any vision-side
/// stage); visual indices in decisions are grid cells of the original image.
public struct Trace: Sendable {
    public static let schema = "reroute.trace"
    public static let schemaVersion = 1
    public static let producerVersion = "0.1.0"

    public var provenance: TraceProvenance
    public var config: ModelConfig
    public var policy: RoutingPolicy
    /// The case as given (before any vision-side stage).
    public var input: PromptCase
    /// Grid cell of each LLM visual token (nil: all cells, no vision-side stage).
    public var llmGridIndices: [Int]?
    /// `[L+1][R][d]` hidden states entering each layer (the last is the last layer's output)
    /// of the stored rows: all S' rows (R = S'), or those of `hiddenStateRows`.
    public var hiddenStates: [[[Float]]]
    /// Sequence indices whose hidden states are stored, strictly ascending (nil: every row).
    /// A compact trace stores a few rows at every layer (SPEC.md §9.1); read its states with
    /// `hiddenState(entering:row:)`.
    public var hiddenStateRows: [Int]?
    /// `[L]` sequence indices each layer processed, ascending.
    public var processed: [[Int]]
    /// `[L]` position ids used by each layer for its processed tokens (same order; one axis,
    /// or t, h, w for M-RoPE).
    public var layerPositions: [PositionIDs]
    /// `[L]` position of the first generated token at each layer.
    public var decodePositions: [Int]
    /// `[L]` KV-cache length of each layer after prefill.
    public var kvLength: [Int]
    /// `[V]` logits of the last prefill position.
    public var lastLogits: [Float]
    public var decisions: [RoutingDecision]
    /// Greedy tokens and the logits each was chosen from (`[T]`, `[T][V]`).
    public var decodeTokens: [Int]
    public var stepLogits: [[Float]]
    /// `[L]` KV-cache length of each layer after decoding.
    public var kvLengthAfterDecode: [Int]
    /// Per-layer text and visual counts, FLOPs and KV bytes of the policy on this case.
    public var budget: BudgetReport
    /// Whether `budget` was computed on reading (the file has no `/budget`: a producer that
    /// knows only its run leaves it to the suite), from the config and the processed sets.
    public var budgetComputed = false

    public init(provenance: TraceProvenance, config: ModelConfig, policy: RoutingPolicy, input: PromptCase,
                llmGridIndices: [Int]?, hiddenStates: [[[Float]]], processed: [[Int]], layerPositions: [PositionIDs],
                decodePositions: [Int], kvLength: [Int], lastLogits: [Float], decisions: [RoutingDecision],
                decodeTokens: [Int], stepLogits: [[Float]], kvLengthAfterDecode: [Int], budget: BudgetReport) {
        self.provenance = provenance
        self.config = config
        self.policy = policy
        self.input = input
        self.llmGridIndices = llmGridIndices
        self.hiddenStates = hiddenStates
        self.processed = processed
        self.layerPositions = layerPositions
        self.decodePositions = decodePositions
        self.kvLength = kvLength
        self.lastLogits = lastLogits
        self.decisions = decisions
        self.decodeTokens = decodeTokens
        self.stepLogits = stepLogits
        self.kvLengthAfterDecode = kvLengthAfterDecode
        self.budget = budget
    }

    /// Length of the LLM-side sequence S' (for a compact trace, from its inputs).
    public var sequenceLength: Int {
        guard hiddenStateRows != nil else { return hiddenStates.first?.count ?? 0 }
        return input.prefixTokens.count + (llmGridIndices?.count ?? input.visual.count) + input.suffixTokens.count
    }

    /// The sequence indices with a stored hidden state, ascending.
    public var storedHiddenRows: [Int] { hiddenStateRows ?? Array(0..<sequenceLength) }

    /// The hidden state of sequence index `row` entering layer `layer` (`layer` = L: the last
    /// layer's output); nil when the trace does not store that row or layer.
    public func hiddenState(entering layer: Int, row: Int) -> [Float]? {
        guard hiddenStates.indices.contains(layer) else { return nil }
        let k = hiddenStateRows.map { $0.firstIndex(of: row) } ?? row
        guard let k, hiddenStates[layer].indices.contains(k) else { return nil }
        return hiddenStates[layer][k]
    }

    /// The same trace storing hidden states only of `rows` (ascending sequence indices, each
    /// already stored): the compact form of SPEC.md §9.1.
    public func keepingHiddenStates(ofRows rows: [Int]) -> Trace {
        var t = self
        t.hiddenStates = hiddenStates.indices.map { l in rows.map { hiddenState(entering: l, row: $0)! } }
        t.hiddenStateRows = rows
        return t
    }
}
