/// What one decoder layer processes during prefill.
///
/// Tokens not in `active` bypass the layer: their hidden state passes through unchanged
/// and the layer's KV cache gets no entry for them (SPEC.md §5). Deletion and routing
/// are both expressed this way; they differ only in which tokens later decisions may pick.
public struct LayerPlan: Sendable, Equatable {
    /// Sequence indices processed by this layer, strictly ascending (causal order).
    public var active: [Int]
    /// RoPE positions of the active tokens, in the same order.
    public var positions: PositionIDs
    /// RoPE position of the first generated token at this layer; token t of decode uses
    /// `decodePosition + t`.
    public var decodePosition: Int

    public init(active: [Int], positions: PositionIDs, decodePosition: Int) {
        precondition(positions.count == active.count, "LayerPlan: \(positions.count) positions for \(active.count) tokens")
        self.active = active
        self.positions = positions
        self.decodePosition = decodePosition
    }
}

/// A per-layer plan for a whole prefill: the "set of active tokens per layer" a decoder
/// executes. Decoders execute plans; they never make them.
public struct ExecutionPlan: Sendable, Equatable {
    public var layers: [LayerPlan]

    public init(layers: [LayerPlan]) { self.layers = layers }

    /// Every token at every layer, with the case's own positions (the unmodified model).
    public static func dense(layers: Int, case c: PromptCase) -> ExecutionPlan {
        let all = Array(0..<c.sequenceLength)
        let plan = LayerPlan(active: all, positions: c.positions, decodePosition: c.positions.nextDecodePosition)
        return ExecutionPlan(layers: Array(repeating: plan, count: layers))
    }
}
