/// The KV cache of one layer (SPEC.md §4): exactly the tokens that layer processed.
///
/// Layers may hold different token sets (pruning and routing make them differ), so the
/// cache is per layer, and a token's RoPE position is stored next to its key: the cache
/// length says nothing about positions.
public struct LayerKVCache: Sendable, Equatable {
    /// Sequence index of each entry (prefill tokens 0 ..< S; generated token t is S + t).
    public var tokens: [Int] = []
    /// RoPE position of each rotary frequency each key was rotated with (`d_head/2` each;
    /// all equal for 1-D RoPE, from the t, h, w axes for M-RoPE).
    public var positions: [[Int]] = []
    /// Keys after RoPE, `[H_kv · d_head]` each.
    public var keys: [[Double]] = []
    /// Values, `[H_kv · d_head]` each.
    public var values: [[Double]] = []

    public init() {}

    /// Number of cached tokens.
    public var count: Int { keys.count }

    mutating func append(token: Int, position: [Int], key: [Double], value: [Double]) {
        tokens.append(token)
        positions.append(position)
        keys.append(key)
        values.append(value)
    }
}
