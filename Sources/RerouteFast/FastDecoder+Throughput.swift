import CRerouteKernels
import Foundation
import RerouteModel

extension FastDecoder {
    /// GFLOP/s of one layer's seven projection products at `rows` rows through this decoder's
    /// own product (the packed-weight kernel up to `packedRowLimit` rows, else OpenBLAS
    /// split over the workers): `2 · rows · Σ out·in` FLOPs over one timed run (after one
    /// untimed run). For `reroute bench`, which takes the median of several; the inputs are constant.
    public func projectionThroughput(layer l: Int = 0, rows: Int) -> Double {
        let w = weights.layers[l], p = packed?[l]
        let products: [(Matrix, PackedWeight?)] = [(w.q, p?.q), (w.k, p?.k), (w.v, p?.v), (w.o, p?.o), (w.gate, p?.gate), (w.up, p?.up),
                                                   (w.down, p?.down)]
        let maxIn = products.map(\.0.cols).max()!, maxOut = products.map(\.0.rows).max()!
        let x = [Float](repeating: 0.01, count: rows * maxIn)
        var y = [Float](repeating: 0, count: rows * maxOut)
        var packedRows = [Float](repeating: 0, count: reroute_packed_rows_count(Int32(rows), Int32(maxIn)))
        let flops = products.map { 2.0 * Double(rows * $0.0.rows * $0.0.cols) }.reduce(0, +)
        var times: [Double] = []
        for _ in 0..<2 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    packedRows.withUnsafeMutableBufferPointer { pr in
                        for (m, pm) in products {
                            gemm(xp.baseAddress!, rows: rows, inner: m.cols, matrix: m, bias: nil, into: yp.baseAddress!, packed: pm,
                                 rowsPacked: packRows(xp.baseAddress!, rows: rows, inner: m.cols, into: pr.baseAddress!))
                        }
                    }
                }
            }
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        }
        return flops / times[1] / 1e9
    }
}
