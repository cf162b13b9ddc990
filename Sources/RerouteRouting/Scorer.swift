/// How a policy scores visual tokens at a decision layer (SPEC.md §8.1).
///
/// `score[j] = agg_h ( mean over query rows r of P_h[r, a + j] )`, where `P_h` is the attention
/// probability of head h (softmax over `domain`, causal), `agg` is the head aggregation and
/// `a + j` the sequence index of visual candidate j.
public struct Scorer: Sendable, Equatable, Codable {
    /// Which query rows score.
    public enum Query: Sendable, Equatable, Codable {
        /// The last prefill token (FastV, Reroute; also PDrop at inference, where the prompt
        /// ends the sequence).
        case lastToken
        /// The last text token after the image (PDrop's "last instruction token"). Equal to
        /// `lastToken` when the case ends with its instruction, as all shipped cases do.
        case lastInstructionToken
        /// The last `k` tokens of the sequence, scores averaged over rows (Nüwa on Qwen: 3).
        case lastRows(Int)
    }

    /// Whose attention probabilities are read.
    public enum Attention: Sendable, Equatable, Codable {
        /// The probabilities layer K−1 produced while running (official FastV and Nüwa):
        /// layer K−1's norm, Q/K and RoPE on its own input, over the tokens it processed.
        case producedByPreviousLayer
        /// The decision layer's own input norm, Q/K and RoPE applied to its input before
        /// it runs (Reroute's rule; official PDrop's "next layer's Q/K" is the same thing).
        case decisionLayerInput
    }

    /// Reduction over heads.
    public enum HeadAggregation: String, Sendable, Equatable, Codable { case mean, max }

    /// The keys of the softmax denominator.
    public enum SoftmaxDomain: String, Sendable, Equatable, Codable {
        /// Every token of the prefill sequence, deferred visual tokens included (with their
        /// stale hidden states); deleted tokens are gone and never included.
        case allTokens
        /// Only the tokens the previous layer processed (the survivors).
        case activeTokens
    }

    public var query: Query
    public var attention: Attention
    public var heads: HeadAggregation
    public var domain: SoftmaxDomain

    public init(query: Query, attention: Attention, heads: HeadAggregation, domain: SoftmaxDomain) {
        self.query = query
        self.attention = attention
        self.heads = heads
        self.domain = domain
    }
}
