/// A routing policy or decision that cannot be executed.
public enum RoutingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A score is NaN; `index` is the visual index relative to the span.
    case nanScore(layer: Int, index: Int)
    case badSchedule(String)
    case badInput(String)
    /// An adapter's selection cannot be executed (not a subset, wrong count, unsorted, bad scores);
    /// layer −1: its merge before the LLM breaks the merge laws.
    case badSelection(adapter: String, layer: Int, String)

    public var description: String {
        switch self {
        case .nanScore(let l, let j): "routing: NaN score for visual token \(j) at decision layer \(l)"
        case .badSchedule(let s): "routing: bad schedule: \(s)"
        case .badInput(let s): "routing: bad input: \(s)"
        case .badSelection(let a, let l, let s):
            l < 0 ? "routing: adapter '\(a)' made an invalid merge before the LLM: \(s)"
                : "routing: adapter '\(a)' made an invalid selection at decision layer \(l): \(s)"
        }
    }
}
