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
    public var keyPositions: [Int]
    /// Indices into `keys` of the query rows.
    public var queryRows: [Int]

    public init(layer: Int, keys: [Int], keyPositions: [Int], queryRows: [Int]) {
        self.layer = layer
        self.keys = keys
        self.keyPositions = keyPositions
        self.queryRows = queryRows
    }
}

/// A decoder that can be driven layer by layer, so a routing session can plan each layer
/// from the state so far. Decoders execute plans and answer score requests; they never decide.
public protocol LayerwiseDecoder {
    associatedtype State
    var config: ModelConfig { get }
    /// Embeds the case (§2.1) and returns the state before layer 0.
    func begin(_ c: PromptCase) throws -> State
    /// Runs layer `layer` on `plan.active` (§5) and records its KV cache.
    func run(layer: Int, plan: LayerPlan, state: inout State)
    /// Attention probabilities for a score request on the current state.
    func attentionProbabilities(_ request: ScoreRequest, state: State) -> [[[Double]]]
}
