/// How close two floating-point tensors must be, with the reason the bound holds.
///
/// Element check (symmetric in expected/actual, as swift-numerics' approximate equality):
/// `|a − b| ≤ relative · max(|a|, |b|) + rowFloor · s_row`, where `s_row` is the largest
/// magnitude in the expected row (one token's vector): the floor keeps elements that are
/// tiny next to their row from demanding a relative precision nobody computes with.
/// Tensor check: `NMSE = Σ(a − b)² / Σ a² ≤ nmse`. NaN never passes; ±Inf must match.
public struct Tolerance: Sendable, Equatable, Codable {
    public var name: String
    public var relative: Double
    public var rowFloor: Double
    public var nmse: Double
    /// Why the numbers are what they are (printed with failures, written in SPEC.md §7).
    public var reason: String

    public init(name: String, relative: Double, rowFloor: Double, nmse: Double, reason: String) {
        self.name = name
        self.relative = relative
        self.rowFloor = rowFloor
        self.nmse = nmse
        self.reason = reason
    }

    /// Reference decoder vs transformers' float64 run stored as float32 (SPEC.md §7.1).
    public static let transformersFloat64 = Tolerance(
        name: "reference-vs-transformers-float64",
        relative: 0x1p-24,
        rowFloor: 1e-12,
        nmse: 1e-14,
        reason: "both sides evaluate the same formulas in float64 (differences ~1e-14 of the row scale after 8 "
            + "layers); the stored side is then rounded to float32, which moves each element by at most "
            + "half an ulp = 2^-24 of its magnitude")

    /// Reference decoder vs stock transformers in float32 (SPEC.md §7.2).
    public static let transformersFloat32 = Tolerance(
        name: "reference-vs-transformers-float32",
        relative: 0,
        rowFloor: 1e-5,
        nmse: 1e-10,
        reason: "float32 RoPE angles err by up to pos·2^-24 rad (1.1e-5 at position 190); float32 dot products "
            + "of length K <= 172 err by about sqrt(K)·2^-24 = 8e-7 relative per layer; measured at most "
            + "4.4e-6 of the row scale on the shipped cases (bound: 1e-5)")
}
