import Foundation
import RerouteModel

/// The model's formulas, one function each, in the plainest form: loops over arrays,
/// every sum accumulated in `Double` (SPEC.md §2). No BLAS, no SIMD, no concurrency:
/// this is the code to read next to the spec, not fast code.
public enum ReferenceMath {
    /// Embedding (§2.1): row `token` of `E[V, d]`.
    public static func embed(_ token: Int, _ embedding: Matrix) -> [Double] {
        embedding.row(token).map(Double.init)
    }

    /// Linear layer (§2.2): `y[r] = Σ_c W[r, c] · x[c] + b[r]` for `W[out, in]`.
    public static func linear(_ x: [Double], _ w: Matrix, bias: [Float]? = nil) -> [Double] {
        precondition(x.count == w.cols, "linear: input \(x.count), weight \(w.rows)x\(w.cols)")
        var y = [Double](repeating: 0, count: w.rows)
        for r in 0..<w.rows {
            var sum = 0.0
            for c in 0..<w.cols { sum += Double(w.values[r * w.cols + c]) * x[c] }
            if let bias { sum += Double(bias[r]) }
            y[r] = sum
        }
        return y
    }

    /// RMSNorm (§2.3): `y[i] = w[i] · x[i] / sqrt(mean_j x[j]² + ε)`.
    public static func rmsNorm(_ x: [Double], weight: [Float], eps: Double) -> [Double] {
        var sumSquares = 0.0
        for v in x { sumSquares += v * v }
        let inv = 1.0 / (sumSquares / Double(x.count) + eps).squareRoot()
        var y = [Double](repeating: 0, count: x.count)
        for i in 0..<x.count { y[i] = Double(weight[i]) * (x[i] * inv) }
        return y
    }

    /// RoPE inverse frequencies (§2.4): `f[i] = θ^(-2i / d_head)`, i = 0 ..< d_head/2.
    public static func ropeInverseFrequencies(headDim: Int, theta: Double) -> [Double] {
        (0..<(headDim / 2)).map { i in pow(theta, -Double(2 * i) / Double(headDim)) }
    }

    /// RoPE on one head vector (§2.4), "rotate half" pairing (i, i + d_head/2):
    /// `y[i] = x[i] cos φ_i − x[i+h] sin φ_i`, `y[i+h] = x[i+h] cos φ_i + x[i] sin φ_i`,
    /// with `φ_i = positions[i] · f[i]`, h = d_head/2. For 1-D RoPE every `positions[i]` is
    /// the token's position; for M-RoPE frequency i reads its axis (`ModelConfig.ropePositions`).
    public static func rope(_ x: ArraySlice<Double>, positions: [Int], inverseFrequencies f: [Double]) -> [Double] {
        let h = f.count
        precondition(x.count == 2 * h && positions.count == h, "rope: head of \(x.count), \(h) frequencies, \(positions.count) positions")
        let base = x.startIndex
        var y = [Double](repeating: 0, count: 2 * h)
        for i in 0..<h {
            let angle = Double(positions[i]) * f[i]
            let c = cos(angle), s = sin(angle)
            let a = x[base + i], b = x[base + i + h]
            y[i] = a * c - b * s
            y[i + h] = b * c + a * s
        }
        return y
    }

    /// RoPE applied to every head of a concatenated `[heads · d_head]` vector.
    public static func ropeHeads(_ x: [Double], heads: Int, positions: [Int], inverseFrequencies f: [Double]) -> [Double] {
        let dh = 2 * f.count
        var y: [Double] = []
        y.reserveCapacity(x.count)
        for head in 0..<heads { y += rope(x[(head * dh)..<((head + 1) * dh)], positions: positions, inverseFrequencies: f) }
        return y
    }

    /// Softmax (§2.5): `p[j] = exp(s[j] − max s) / Σ_k exp(s[k] − max s)`.
    public static func softmax(_ s: [Double]) -> [Double] {
        let m = s.max() ?? 0
        var e = s.map { exp($0 - m) }
        var total = 0.0
        for v in e { total += v }
        for j in 0..<e.count { e[j] /= total }
        return e
    }

    /// SiLU: `x · σ(x) = x / (1 + e^−x)`.
    public static func silu(_ x: Double) -> Double { x / (1 + exp(-x)) }

    /// GELU, exact form (§2.7): `x/2 · (1 + erf(x / √2))`.
    public static func gelu(_ x: Double) -> Double { 0.5 * x * (1 + erf(x / 2.0.squareRoot())) }

    /// Attention of one query token over a list of keys/values (§2.5), grouped-query:
    /// query head h reads key/value head `h / (H / H_kv)`;
    /// `out_h = Σ_j softmax_j(q_h · k_j,g / √d_head) · v_j,g`. Returns `[H · d_head]`.
    public static func attend(query q: [Double], keys: [[Double]], values: [[Double]],
                              heads: Int, kvHeads: Int, headDim dh: Int) -> [Double] {
        let group = heads / kvHeads
        let scale = 1.0 / Double(dh).squareRoot()
        var out = [Double](repeating: 0, count: heads * dh)
        for h in 0..<heads {
            let g = h / group
            var scores = [Double](repeating: 0, count: keys.count)
            for j in 0..<keys.count {
                var dot = 0.0
                for e in 0..<dh { dot += q[h * dh + e] * keys[j][g * dh + e] }
                scores[j] = dot * scale
            }
            let p = softmax(scores)
            for j in 0..<keys.count {
                for e in 0..<dh { out[h * dh + e] += p[j] * values[j][g * dh + e] }
            }
        }
        return out
    }

    /// SwiGLU MLP (§2.6): `down(silu(gate(x)) ⊙ up(x))`.
    public static func swiGLU(_ x: [Double], gate: Matrix, up: Matrix, down: Matrix) -> [Double] {
        let g = linear(x, gate), u = linear(x, up)
        var hidden = [Double](repeating: 0, count: g.count)
        for i in 0..<g.count { hidden[i] = silu(g[i]) * u[i] }
        return linear(hidden, down)
    }

    /// Projector (§2.8): `linear_2(GELU(linear_1(n(x))))`, `n` the RMSNorm of each patch
    /// chunk for Qwen2.5-VL's merger, the identity for LLaVA.
    public static func project(_ x: [Double], _ p: ProjectorWeights) -> [Double] {
        var x = x
        if let w = p.featureNorm {
            x = stride(from: 0, to: x.count, by: w.count).flatMap { start in
                rmsNorm(Array(x[start..<start + w.count]), weight: w, eps: ProjectorWeights.featureNormEps)
            }
        }
        let h = linear(x, p.linear1, bias: p.bias1).map(gelu)
        return linear(h, p.linear2, bias: p.bias2)
    }

    /// Index of the largest value; the lowest index wins a tie (as `torch.argmax`).
    public static func argmax(_ x: [Double]) -> Int {
        var best = 0
        for i in 1..<x.count where x[i] > x[best] { best = i }
        return best
    }
}
