/// What happens to visual candidates a decision does not keep (SPEC.md §8.5).
public enum RoutingAction: Sendable, Equatable, Codable {
    /// Physical removal: the token leaves the sequence for every later layer and never
    /// returns; later softmaxes no longer see it.
    case delete
    /// Routing: the token bypasses the stage's layers with its hidden state unchanged and
    /// no KV entries there. Non-monotonic: every visual token competes again at the next
    /// decision (Reroute). Monotonic: only the tokens kept at the previous decision compete.
    case route(monotonic: Bool)
}

/// Which RoPE positions processed tokens use (SPEC.md §8.6).
public enum PositionPolicy: String, Sendable, Equatable, Codable {
    /// Each token keeps the position id the case gave it (gaps after removal); decode
    /// continues at `max(position ids) + 1`. FastV, Nüwa, Reroute and the release baselines.
    case original
    /// After each decision the processed sequence is re-numbered `0 ..< n_l`, and decode at
    /// layer l continues at `n_l` (official PDrop, including its decode-position shift).
    case reindexed
}

/// How a policy's budget relates to the method it augments (reported by the budget calculator).
public enum BudgetMatching: Sendable, Equatable, Codable {
    /// Not a variant of another method.
    case none
    /// Identical processed visual count at every layer (so identical FLOPs and KV).
    case perLayer(base: String)
    /// Same average visual tokens per layer (avg_T), different per-layer profile.
    case averageTokens(base: String)
}
