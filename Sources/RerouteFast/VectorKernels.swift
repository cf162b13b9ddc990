import CRerouteKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Elementwise kernels of the fast decoder on raw Float32 buffers: RMSNorm, RoPE, softmax and
/// SwiGLU call `CRerouteKernels` on the decoder's vector path; adds and copies are SIMD8 here.
///
/// Plain `a * b + c` in the SIMD8 code: `SIMD.addingProduct` compiles to per-lane `fmaf` calls on
/// Swift's default x86-64 baseline (no FMA) and is ~50× slower (platform.md §3).
enum Kernels {
    typealias V8 = SIMD8<Float>

    @inline(__always) static func load8(_ p: UnsafePointer<Float>) -> V8 { UnsafeRawPointer(p).loadUnaligned(as: V8.self) }
    @inline(__always) static func load8(_ p: UnsafeMutablePointer<Float>) -> V8 { UnsafeRawPointer(p).loadUnaligned(as: V8.self) }
    @inline(__always) static func store8(_ v: V8, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V8.self) }

    /// `y[i] = w[i] · x[i] / sqrt(mean(x²) + ε)` (the mean accumulated in Float), on the
    /// decoder's vector path; `y` may be `x`.
    static func rmsNorm(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count n: Int, eps: Float,
                        isa: VectorISA) {
        reroute_rmsnorm(isa.code, x, w, y, n, eps)
    }

    /// RoPE on `heads` consecutive head vectors at one position, from cos/sin tables of
    /// `d_h/2` entries (rotate-half pairing, SPEC.md §2.4), on the decoder's vector path.
    static func rope(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim dh: Int, cos c: UnsafePointer<Float>, sin s: UnsafePointer<Float>,
                     isa: VectorISA) {
        reroute_rope(isa.code, x, Int32(heads), Int32(dh), c, s)
    }

    /// In-place softmax over `n` values (max subtracted), on the decoder's vector path.
    static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int, isa: VectorISA) {
        reroute_softmax(isa.code, x, n)
    }

    /// `g[i] = silu(g[i]) · u[i]` in place, on the decoder's vector path.
    static func swiGLU(_ g: UnsafeMutablePointer<Float>, _ u: UnsafePointer<Float>, count n: Int, isa: VectorISA) {
        reroute_swiglu(isa.code, g, u, n)
    }

    /// `y[i] += x[i]`.
    static func add(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, count n: Int) {
        var i = 0
        while i + 8 <= n {
            let v = load8(y + i) + load8(x + i)
            store8(v, y + i)
            i += 8
        }
        while i < n { y[i] += x[i]; i += 1 }
    }

    /// Copies `count` floats (row gather/scatter).
    @inline(__always)
    static func copy(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count n: Int) {
        dst.update(from: src, count: n)
    }
}
