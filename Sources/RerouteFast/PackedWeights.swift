import CBLAS
import CRerouteKernels
import RerouteModel

/// A weight matrix `W [rows, cols]` in the panel layout of `CRerouteKernels` (SPEC.md §10.2),
/// packed once when the decoder is made, for the few-row products of routed layers. Mapped
/// bf16 matrices are not packed whole (that is an f32 copy); `Matrix.packTile` packs them tile
/// by tile as they are multiplied.
struct PackedWeight: Sendable {
    let rows: Int, cols: Int
    let values: [Float]

    init(_ m: Matrix) {
        precondition(!m.isMapped, "mapped bf16 matrices are packed tile by tile, not whole")
        rows = m.rows
        cols = m.cols
        values = [Float](unsafeUninitializedCapacity: reroute_packed_count(Int32(m.rows), Int32(m.cols))) { buffer, count in
            m.values.withUnsafeBufferPointer { reroute_pack_weights($0.baseAddress!, Int32(m.rows), Int32(m.cols), buffer.baseAddress!) }
            count = buffer.count
        }
    }

    /// Panels of 16 output columns.
    var panels: Int { (rows + Int(REROUTE_PACK_PANEL) - 1) / Int(REROUTE_PACK_PANEL) }
}

extension Matrix {
    /// Rows `r0 ..< r1` packed as a matrix of their own (`reroute_packed_count(r1 − r0, cols)`
    /// floats into `out`), from f32 values or mapped bf16 elements: the same floats either way,
    /// since widening bf16 is exact.
    func packTile(rows r0: Int, _ r1: Int, isa: VectorISA, into out: UnsafeMutablePointer<Float>) {
        precondition(0 <= r0 && r0 <= r1 && r1 <= rows, "Matrix.packTile: \(r0)..<\(r1) of \(rows)")
        if let bf16 {
            bf16.withRawBytes { reroute_pack_weights_bf16(isa.code, $0 + 2 * r0 * cols, Int32(r1 - r0), Int32(cols), out) }
        } else {
            values.withUnsafeBufferPointer { reroute_pack_weights($0.baseAddress! + r0 * cols, Int32(r1 - r0), Int32(cols), out) }
        }
    }
}

/// One layer's seven projection matrices, packed.
struct PackedLayer: Sendable {
    let q: PackedWeight, k: PackedWeight, v: PackedWeight, o: PackedWeight
    let gate: PackedWeight, up: PackedWeight, down: PackedWeight

    init(_ w: LayerWeights) {
        (q, k, v, o) = (PackedWeight(w.q), PackedWeight(w.k), PackedWeight(w.v), PackedWeight(w.o))
        (gate, up, down) = (PackedWeight(w.gate), PackedWeight(w.up), PackedWeight(w.down))
    }
}

extension FastDecoder {
    /// The row count up to which the packed-weight kernel beats single-threaded OpenBLAS
    /// (measured with `reroute bench`, section 1, README "Vector paths and the physical limit"):
    /// 128 on the AVX2 path (its 6×16 kernel against OpenBLAS's Haswell/Zen kernels); every
    /// row count on the AVX-512 path, whatever OpenBLAS core runs (`blasCore`, as
    /// `openblas_get_corename` names it): with its 1024-long k blocks the 12×32 kernel is
    /// 1.05–1.13× OpenBLAS's own AVX-512 sgemm at 612 rows on Zen 4, and an AVX2 sgemm (for
    /// instance under `OPENBLAS_CORETYPE=Haswell`) reaches at most the AVX2 peak; 0 on the
    /// portable path.
    public static func packedRowCrossover(isa: VectorISA, blasCore: String = String(cString: openblas_get_corename())) -> Int {
        switch isa {
        case .portable: return 0
        case .avx2: return 128
        case .avx512: return 1 << 30
        }
    }
}
