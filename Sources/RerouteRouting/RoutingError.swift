/// A routing policy or decision that cannot be executed.
public enum RoutingError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A score is NaN; `index` is the visual index relative to the span.
    case nanScore(layer: Int, index: Int)
    case badSchedule(String)
    case badInput(String)

    public var description: String {
        switch self {
        case .nanScore(let l, let j): "routing: NaN score for visual token \(j) at decision layer \(l)"
        case .badSchedule(let s): "routing: bad schedule: \(s)"
        case .badInput(let s): "routing: bad input: \(s)"
        }
    }
}
