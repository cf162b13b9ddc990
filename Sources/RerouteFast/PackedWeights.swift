import CBLAS
import CRerouteKernels
import RerouteModel

/// A weight matrix `W [rows, cols]` in the panel layout of `CRerouteKernels` (SPEC.md §10.2),
/// packed once when the decoder is made, for the few-row products of routed layers.
struct PackedWeight: Sendable {
    let rows: Int, cols: Int
    let values: [Float]

    init(_ m: Matrix) {
        precondition(!m.isMapped, "mapped bf16 matrices are widened tile by tile, not packed")
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
