import Foundation
import RerouteModel
import RerouteTrace

/// The arithmetic a trace was computed in, as far as the comparison cares: the unit roundoff
/// of the values it stored between operations.
public enum Precision: String, Sendable, Codable, CaseIterable, Comparable {
    case float64, float32, float16, bfloat16

    /// Unit roundoff `u = 2^-(p)` for a `p+1`-bit significand (half an ulp at 1).
    public var unitRoundoff: Double {
        switch self {
        case .float64: 0x1p-53
        case .float32: 0x1p-24
        case .float16: 0x1p-11
        case .bfloat16: 0x1p-8
        }
    }

    /// Ordered from the most to the least precise.
    public static func < (a: Precision, b: Precision) -> Bool { a.unitRoundoff < b.unitRoundoff }

    /// Parses the names producers write (`torch.bfloat16`, `bf16`, `fp32`, …).
    public init?(name: String) {
        switch name.lowercased().replacingOccurrences(of: "torch.", with: "") {
        case "float64", "double", "fp64", "f64": self = .float64
        case "float32", "float", "fp32", "f32": self = .float32
        case "float16", "half", "fp16", "f16": self = .float16
        case "bfloat16", "bf16": self = .bfloat16
        default: return nil
        }
    }
}

/// The named tolerance sets of `reroute diff --preset` (SPEC.md §9.3).
public enum ComparisonPreset: String, Sendable, Codable, CaseIterable {
    /// Both sides the float64 reference decoder (one of them stored as a float32 golden).
    case reference
    /// One side float32 arithmetic (the fast decoder, stock transformers in float32).
    case fp32
    /// One side stores bfloat16 between operations (a transformers model in bf16).
    case bf16
    /// One side stores float16 between operations.
    case fp16

    /// The preset for a comparison whose less precise side computed in `p`.
    public init(precision p: Precision) {
        switch p {
        case .float64: self = .reference
        case .float32: self = .fp32
        case .float16: self = .fp16
        case .bfloat16: self = .bf16
        }
    }

    public var precision: Precision {
        switch self {
        case .reference: .float64
        case .fp32: .float32
        case .fp16: .float16
        case .bf16: .bfloat16
        }
    }
}

/// Everything a trace comparison decides with (SPEC.md §9.3, §10.3): tolerances, the tie
/// rule, optional route slack, and what to compare. One value per comparison, named by its
/// preset and the reason it was chosen, so every report can say which rules judged it.
public struct ComparisonRules: Sendable, Encodable, Equatable {
    /// Name of the rules ("reference", "fp32", "bf16", "fp16", or "command line").
    public var name: String
    /// Why these rules (which precision, derived how, chosen why).
    public var reason: String
    /// Hidden states, logits and step logits.
    public var tensors: Tolerance
    /// Decision scores (attention probabilities), each decision a row.
    public var scores: Tolerance
    /// A differing kept set is a **tie flip** when, in both traces' scores, every differing
    /// candidate lies within `tieEpsilon · s_max` of the others, `s_max` being the largest
    /// score of that decision in either trace (relative, like the score floor).
    public var tieEpsilon: Double
    /// vLLM-style acceptance: a differing kept index is accepted when each side's choice lies
    /// in the other side's top-(k+m) by score. nil: not used.
    @Nullable public var routeSlack: Int?
    /// Compare routes, processed sets, positions, KV lengths and budgets only; skip hidden
    /// states, scores, logits and tokens (implementations in other engines or precisions).
    public var routesOnly: Bool
    /// Offending elements reported per tensor.
    public var maxReported: Int

    public init(name: String, reason: String, tensors: Tolerance, scores: Tolerance, tieEpsilon: Double,
                routeSlack: Int? = nil, routesOnly: Bool = false, maxReported: Int = 8) {
        self.name = name
        self.reason = reason
        self.tensors = tensors
        self.scores = scores
        self.tieEpsilon = tieEpsilon
        self.routeSlack = routeSlack
        self.routesOnly = routesOnly
        self.maxReported = maxReported
    }

    /// A reference-decoder run against a reference golden: both computed in float64, the
    /// golden stored in float32 (hidden states, logits) and float64 (scores).
    public static let reference = ComparisonRules(
        name: ComparisonPreset.reference.rawValue,
        reason: "both sides are the float64 reference decoder; only libm differences between machines (~1e-15) and "
            + "the golden's float32 rounding (half an ulp, 2^-24 relative) separate them",
        tensors: Tolerance(name: "reference", relative: 0x1p-24, rowFloor: 1e-12, nmse: 1e-14,
                           reason: "float64 on both sides, one stored in float32: 2^-24 relative + 1e-12 of the row scale"),
        scores: Tolerance(name: "reference-scores", relative: 1e-12, rowFloor: 1e-12, nmse: 1e-20,
                          reason: "float64 probabilities stored in float64; libm differences only"),
        tieEpsilon: 1e-12)

    /// The rules of `preset` for a model of `config` whose largest position id is `maxPosition`.
    ///
    /// Below float64 (SPEC.md §9.3): with `u` the preset's unit roundoff, `u₃₂ = 2^-24`, `K =
    /// max(d, m)` the longest reduction and `L` layers, the element floor is
    /// `(8·sqrt(L)·(sqrt(K)·u₃₂ + u) + P·u₃₂)` of the row scale: float32 accumulation of a
    /// length-K sum errs by about `sqrt(K)·u₃₂`, each stored intermediate by `u`, RoPE angles
    /// `p·θ` computed in float32 by up to `P·u₃₂` rad, and L layers compound about `sqrt(L)`
    /// of the per-layer error (8 is the safety factor). NMSE limit: the floor squared. Scores
    /// use the same floor of the decision's largest score; tie ε is twice the floor.
    public static func preset(_ preset: ComparisonPreset, config c: ModelConfig, maxPosition: Int) -> ComparisonRules {
        guard preset != .reference else { return .reference }
        let u32 = Precision.float32.unitRoundoff, u = preset.precision.unitRoundoff
        let k = Double(max(c.hiddenSize, c.intermediateSize)), layers = Double(max(1, c.layers))
        let floor = 8 * layers.squareRoot() * (k.squareRoot() * u32 + u) + Double(max(0, maxPosition)) * u32
        let derivation = String(format: "8·sqrt(L=%d)·(sqrt(K=%d)·2^-24 + %@) + P=%d·2^-24 = %.3g of the row scale",
                                c.layers, Int(k), preset == .fp32 ? "2^-24" : preset == .bf16 ? "2^-8" : "2^-11", maxPosition, floor)
        return ComparisonRules(
            name: preset.rawValue,
            reason: "\(preset.precision.rawValue) arithmetic on one side: element floor \(derivation)",
            tensors: Tolerance(name: preset.rawValue, relative: 0, rowFloor: floor, nmse: floor * floor, reason: derivation),
            scores: Tolerance(name: "\(preset.rawValue)-scores", relative: 0, rowFloor: floor, nmse: floor * floor,
                              reason: "probabilities from the same arithmetic: the same floor, of the decision's largest score"),
            tieEpsilon: 2 * floor)
    }

    /// The fast decoder (float32) against reference traces of a model (SPEC.md §10.3).
    public static func fastVsReference(_ c: ModelConfig, maxPosition: Int = 0) -> ComparisonRules {
        preset(.fp32, config: c, maxPosition: maxPosition)
    }

    /// The precision a trace was computed in: its `/@dtype` when recorded, else what its
    /// decoder is known to use (the reference decoder float64, the fast decoder float32).
    public static func precision(of t: Trace) -> (Precision, String)? {
        if let name = t.provenance.dtype {
            guard let p = Precision(name: name) else { return nil }
            return (p, "/@dtype = \(name)")
        }
        switch t.provenance.decoder {
        case "reference": return (.float64, "decoder 'reference' (float64)")
        case "fast": return (.float32, "decoder 'fast' (float32)")
        default: return nil
        }
    }

    /// The rules for two traces chosen from what they recorded: the preset of the less
    /// precise side. A side whose precision is not recorded is taken as float32, and the
    /// reason says so (pass `--preset` to choose).
    public static func automatic(expected e: Trace, actual a: Trace) -> ComparisonRules {
        var why: [String] = []
        var worst = Precision.float64
        for (side, t) in [("expected", e), ("actual", a)] {
            if let (p, source) = precision(of: t) {
                why.append("\(side): \(p.rawValue) from \(source)")
                worst = max(worst, p)
            } else {
                why.append("\(side): precision not recorded (decoder '\(t.provenance.decoder)'\(t.provenance.dtype.map { ", dtype '\($0)'" } ?? "")), taken as float32")
                worst = max(worst, .float32)
            }
        }
        let p = ComparisonPreset(precision: worst)
        var rules = preset(p, config: a.config, maxPosition: max(e.input.positions.maxPosition, a.input.positions.maxPosition))
        rules.reason = "preset \(p.rawValue) chosen automatically (\(why.joined(separator: "; "))); " + rules.reason
        return rules
    }
}

extension PositionIDs {
    /// The largest position id on any axis (0 when empty).
    public var maxPosition: Int { axes.lazy.compactMap { $0.max() }.max() ?? 0 }
}
