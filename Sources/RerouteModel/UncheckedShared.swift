/// The one wrapper for sharing a value across threads that the compiler cannot prove safe.
///
/// Use it only for values that are never mutated while shared (read-only captures handed to
/// worker threads, such as job closures), and say at the use why that holds. Everything else
/// that crosses threads is `Sendable` by construction or guarded by a lock in its own type.
public struct UncheckedShared<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}
