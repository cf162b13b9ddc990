/// A dense row-major matrix of `Float` (weights as stored, widened to f32).
///
/// Invariant: `values.count == rows * cols`; element (r, c) is `values[r * cols + c]`.
public struct Matrix: Sendable, Equatable {
    public let rows: Int
    public let cols: Int
    public var values: [Float]

    public init(rows: Int, cols: Int, values: [Float]) {
        precondition(rows >= 0 && cols >= 0 && values.count == rows * cols, "Matrix: \(values.count) values for \(rows)x\(cols)")
        self.rows = rows
        self.cols = cols
        self.values = values
    }

    public subscript(r: Int, c: Int) -> Float { values[r * cols + c] }

    /// Row `r` as a new array.
    public func row(_ r: Int) -> ArraySlice<Float> { values[(r * cols)..<((r + 1) * cols)] }
}
