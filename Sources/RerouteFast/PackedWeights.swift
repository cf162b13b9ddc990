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
    /// Floats of one caller's row-packing workspace.
    static let workspaceCount = Int(REROUTE_PACK_MC) * Int(REROUTE_PACK_KC)
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
