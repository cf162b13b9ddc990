import Foundation

/// SplitMix64 with Box–Muller normals: a specified generator, so golden inputs, benchmark
/// models and test inputs are the same on every machine.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    public mutating func uniform() -> Double { (Double(next() >> 11) + 1) / 9_007_199_254_740_992 }
    /// Uniform in [-1, 1), 24 bits.
    public mutating func nextSigned() -> Float { Float(next() >> 40) / Float(1 << 23) - 1 }
    public mutating func normal() -> Double { (-2 * log(uniform())).squareRoot() * cos(2 * Double.pi * uniform()) }
    public mutating func integer(below n: Int) -> Int { Int(next() % UInt64(n)) }
}
