/// A request for attention probabilities, answered by a decoder (SPEC.md §8.1).
///
/// The decoder applies layer `layer`'s input norm, Q/K projections (with biases) and RoPE
/// to the hidden states **entering** `layer`, for the query rows and the keys listed, and
/// returns `P[row][head][key]` = causal softmax over the listed keys (a key after the
/// query's sequence index gets probability 0 and is left out of the denominator).
public struct ScoreRequest: Sendable, Equatable {
    public var layer: Int
    /// Sequence indices of the keys (the softmax domain), ascending.
    public var keys: [Int]
    /// Position ids of the keys, in the same order.
    public var keyPositions: PositionIDs
    /// Indices into `keys` of the query rows.
    public var queryRows: [Int]

    public init(layer: Int, keys: [Int], keyPositions: PositionIDs, queryRows: [Int]) {
        self.layer = layer
        self.keys = keys
        self.keyPositions = keyPositions
        self.queryRows = queryRows
    }
}

/// The answer to a score request: the probabilities, and what computing them produced that
/// the run of the request's layer may reuse instead of computing it again (the fast decoder's
/// scored keys). The routing session hands `reuse` to that layer's run, explicitly.
public struct ScoreAnswer<Reuse> {
    /// `P[row][head][key]` as `ScoreRequest` describes.
    public var probabilities: [[[Double]]]
    public var reuse: Reuse?

    public init(probabilities: [[[Double]]], reuse: Reuse? = nil) {
        self.probabilities = probabilities
        self.reuse = reuse
    }
}

/// A decoder that can be driven layer by layer, so a routing session can plan each layer
/// from the state so far. Decoders execute plans and answer score requests; they never decide.
public protocol LayerwiseDecoder {
    associatedtype State
    /// What a score request's answer can hand to the run of its layer (`Never`: nothing).
    associatedtype ScoreReuse = Never
    var config: ModelConfig { get }
    /// Embeds the case (§2.1) and returns the state before layer 0. `kvCapacity[l]`, when
    /// given, is the number of cache entries layer l will hold (prefill + fed decode tokens),
    /// so a decoder can allocate its caches once, at their final size.
    func begin(_ c: PromptCase, kvCapacity: [Int]?) throws -> State
    /// Runs layer `layer` on `plan.active` (§5) and records its KV cache. `reusing` is the
    /// answer's reuse of a score request for this layer on the same state, or nil; a decoder
    /// uses it only where it holds exactly what the layer would compute.
    func run(layer: Int, plan: LayerPlan, state: inout State, reusing: ScoreReuse?)
    /// Attention probabilities for a score request on the current state.
    func attentionProbabilities(_ request: ScoreRequest, state: State) -> ScoreAnswer<ScoreReuse>
    /// The hidden states entering `layer` of the given sequence rows, `[rows][d]` (read-only;
    /// adapters that select by content read them at decision layers).
    func hiddenStates(entering layer: Int, rows: [Int], state: State) -> [[Double]]
    /// Layer `layer`'s keys after RoPE for the given sequence rows at `positions` (one column
    /// per row), `[rows][H_kv·d_head]`: its input norm, K projection (+ bias) and RoPE on the
    /// hidden states entering `layer`, i.e. what that layer caches for a row it processes with
    /// those positions (read-only; adapters that select by keys read them).
    func rotatedKeys(layer: Int, rows: [Int], positions: PositionIDs, state: State) -> [[Double]]
    /// The final RMSNorm (the LM head's input) of each row, `[rows][d]`.
    func finalNormed(_ rows: [[Double]]) -> [[Double]]
}

extension LayerwiseDecoder {
    /// Runs a layer with nothing to reuse.
    public func run(layer: Int, plan: LayerPlan, state: inout State) { run(layer: layer, plan: plan, state: &state, reusing: nil) }
}

/// What a prefill produced, in the form traces store (float32).
public struct PrefillOutputs: Sendable {
    /// `[L+1][S][d]` hidden states entering each layer (empty when the decoder was told not
    /// to record them).
    public var hiddenStates: [[[Float]]]
    public var lastLogits: [Float]
    public var kvLength: [Int]
    public var plans: [LayerPlan]

    public init(hiddenStates: [[[Float]]], lastLogits: [Float], kvLength: [Int], plans: [LayerPlan]) {
        self.hiddenStates = hiddenStates
        self.lastLogits = lastLogits
        self.kvLength = kvLength
        self.plans = plans
    }
}

/// What greedy decoding produced.
public struct DecodeOutputs: Sendable {
    public var tokens: [Int]
    public var stepLogits: [[Float]]
    public var kvLength: [Int]

    public init(tokens: [Int], stepLogits: [[Float]], kvLength: [Int]) {
        self.tokens = tokens
        self.stepLogits = stepLogits
        self.kvLength = kvLength
    }
}

/// A layer-wise decoder whose runs can be recorded as traces (reference and fast).
public protocol TraceableDecoder: LayerwiseDecoder {
    /// "reference", "fast".
    var name: String { get }
    /// The vector path its kernels ran (`VectorISA` name; nil: it has none, as the scalar reference).
    var vectorPath: String? { get }
    var weights: ModelWeights { get }
    /// Outputs of a state in which every layer has run.
    func prefillOutputs(_ state: State) -> PrefillOutputs
    /// Greedy decoding after the prefill (§4), extending the state's caches.
    func greedyDecode(_ state: inout State, steps: Int) -> DecodeOutputs
}

extension TraceableDecoder {
    public var vectorPath: String? { nil }
}
