/// A dense row-major matrix of `Float` (weights as stored, widened to f32), or a read-only
/// view of bf16 weights in a memory-mapped checkpoint (`ModelWeights.load(…, storage:
/// .mappedBF16)`), which the fast decoder widens tile by tile as it multiplies them.
///
/// Invariant: either `values.count == rows * cols` and element (r, c) is
/// `values[r * cols + c]`, or `values` is empty and `bf16` holds `rows * cols` elements.
public struct Matrix: Sendable, Equatable {
    public let rows: Int
    public let cols: Int
    public var values: [Float]
    /// The mapped bf16 elements, row-major, when the matrix was not widened.
    public let bf16: MappedBF16?

    public init(rows: Int, cols: Int, values: [Float]) {
        precondition(rows >= 0 && cols >= 0 && values.count == rows * cols, "Matrix: \(values.count) values for \(rows)x\(cols)")
        self.rows = rows
        self.cols = cols
        self.values = values
        bf16 = nil
    }

    /// A matrix backed by mapped bf16 elements (no f32 copy).
    public init(rows: Int, cols: Int, bf16: MappedBF16) {
        precondition(rows >= 0 && cols >= 0 && bf16.count == rows * cols, "Matrix: \(bf16.count) bf16 values for \(rows)x\(cols)")
        self.rows = rows
        self.cols = cols
        values = []
        self.bf16 = bf16
    }

    /// Whether the elements live in a mapped bf16 checkpoint rather than in `values`.
    public var isMapped: Bool { bf16 != nil }

    public subscript(r: Int, c: Int) -> Float { bf16.map { $0[r * cols + c] } ?? values[r * cols + c] }

    /// Row `r` as a new array.
    public func row(_ r: Int) -> ArraySlice<Float> {
        if let bf16 { return ArraySlice((0..<cols).map { bf16[r * cols + $0] }) }
        return values[(r * cols)..<((r + 1) * cols)]
    }

    /// Rows `r0 ..< r1` widened to f32 into `out` (`(r1 − r0) · cols` floats).
    public func widenRows(_ r0: Int, _ r1: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(0 <= r0 && r0 <= r1 && r1 <= rows, "Matrix.widenRows: \(r0)..<\(r1) of \(rows)")
        if let bf16 {
            bf16.widen(from: r0 * cols, count: (r1 - r0) * cols, into: out)
        } else {
            values.withUnsafeBufferPointer { out.update(from: $0.baseAddress! + r0 * cols, count: (r1 - r0) * cols) }
        }
    }

    public static func == (a: Matrix, b: Matrix) -> Bool {
        guard a.rows == b.rows, a.cols == b.cols else { return false }
        if a.bf16 == nil, b.bf16 == nil { return a.values == b.values }
        return (0..<a.rows).allSatisfy { a.row($0) == b.row($0) }
    }
}

/// bf16 elements inside a memory-mapped file, kept alive by the mapping they point into.
public final class MappedBF16: Sendable {
    let owner: any AnyObject & Sendable
    /// Read-only mapped memory kept alive by `owner`: sharing the pointer across threads is safe.
    let mapping: UncheckedShared<UnsafePointer<UInt16>>
    var base: UnsafePointer<UInt16> { mapping.value }
    public let count: Int

    init(owner: any AnyObject & Sendable, base: UnsafeRawPointer, count: Int) {
        self.owner = owner
        mapping = UncheckedShared(base.assumingMemoryBound(to: UInt16.self))
        self.count = count
    }

    public subscript(i: Int) -> Float { bfloat16ToFloat(UInt16(littleEndian: base[i])) }

    /// The first element that is NaN or ±Inf (exponent bits all set), if any.
    public func firstNonFinite() -> Int? {
        let raw = UnsafeRawPointer(base)
        for i in 0..<count where UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) & 0x7F80 == 0x7F80 {
            return i
        }
        return nil
    }

    /// `body` on the mapped elements' bytes (2 per element, little-endian, any alignment), for
    /// kernels that widen the elements as they read them; valid only within `body`.
    public func withRawBytes<R>(_ body: (UnsafeRawPointer) throws -> R) rethrows -> R {
        try withExtendedLifetime(self) { try body(UnsafeRawPointer(base)) }
    }

    /// Widens `count` elements from `start` into `out` (exact: bf16 is the top half of f32).
    public func widen(from start: Int, count n: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(start >= 0 && n >= 0 && start + n <= count, "MappedBF16.widen: \(start)+\(n) of \(count)")
        let src = UnsafeRawPointer(base + start)
        out.withMemoryRebound(to: UInt32.self, capacity: n) { dst in
            for i in 0..<n { dst[i] = UInt32(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16 }
        }
    }
}
