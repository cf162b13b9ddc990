import CBLAS
import CRerouteKernels
import Foundation
import RerouteFast
import RerouteModel

/// The machine's own limits, measured next to what they bound: the sgemm roofline at a
/// model's projection shapes, streaming-read and memcpy bandwidth.
public enum MachineProbes {
    /// GFLOP/s of the seven projection sgemms of one layer at n rows: OpenBLAS's own threading
    /// (`split` false) or output columns split over `workers` single-threaded calls (as the
    /// decoder does). OpenBLAS is left at 1 thread afterwards.
    public static func sgemmRoofline(_ c: ModelConfig, rows n: Int, repeats: Int, split: Bool, workers: Int) -> Double {
        BLASThreads.set(split ? 1 : workers)
        defer { BLASThreads.set(1) }
        let shapes = [(c.queryWidth, c.hiddenSize), (c.kvWidth, c.hiddenSize), (c.kvWidth, c.hiddenSize), (c.hiddenSize, c.queryWidth),
                      (c.intermediateSize, c.hiddenSize), (c.intermediateSize, c.hiddenSize), (c.hiddenSize, c.intermediateSize)]
        let maxIn = shapes.map(\.1).max()!, maxOut = shapes.map(\.0).max()!
        let x = [Float](repeating: 0.01, count: n * maxIn)
        let w = [Float](repeating: 0.02, count: maxOut * maxIn)
        var y = [Float](repeating: 0, count: n * maxOut)
        let flops = shapes.map { 2.0 * Double(n * $0.0 * $0.1) }.reduce(0, +)
        var t: [Double] = []
        for _ in 0..<(repeats + 1) {
            t.append(Statistics.seconds {
                for (out, inner) in shapes {
                    if !split {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(out), Int32(inner), 1, x, Int32(inner),
                                    w, Int32(inner), 0, &y, Int32(out))
                        continue
                    }
                    let chunk = ((out + workers - 1) / workers + 15) / 16 * 16
                    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in y.withUnsafeMutableBufferPointer { yp in
                        let (xa, wa, ya) = (UInt(bitPattern: xp.baseAddress!), UInt(bitPattern: wp.baseAddress!), UInt(bitPattern: yp.baseAddress!))
                        DispatchQueue.concurrentPerform(iterations: workers) { part in
                            let c0 = part * chunk, c1 = min(out, c0 + chunk)
                            guard c0 < c1 else { return }
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(c1 - c0), Int32(inner), 1,
                                        UnsafePointer<Float>(bitPattern: xa), Int32(inner), UnsafePointer<Float>(bitPattern: wa)! + c0 * inner,
                                        Int32(inner), 0, UnsafeMutablePointer<Float>(bitPattern: ya)! + c0, Int32(out))
                        }
                    } } }
                }
            })
        }
        return flops / Statistics.median(Array(t.dropFirst())) / 1e9
    }

    /// Sum of 1 GiB of floats (SIMD8, four independent sums, one pass, split over all cores
    /// as sgemv is): bytes read per second, the bound of weight streaming at decode.
    public static func readBandwidth(repeats: Int) -> Double {
        let n = 1 << 28
        let workers = ProcessInfo.processInfo.activeProcessorCount
        let buf = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { buf.deallocate() }
        buf.initialize(repeating: 1, count: n)
        let address = UInt(bitPattern: buf)
        var t: [Double] = []
        for _ in 0..<(repeats + 1) {
            t.append(Statistics.seconds {
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    let p = UnsafePointer<Float>(bitPattern: address)!
                    let chunk = n / workers
                    // Four independent sums, so the loop waits on memory, not on add latency.
                    var (a0, a1, a2, a3) = (SIMD8<Float>.zero, SIMD8<Float>.zero, SIMD8<Float>.zero, SIMD8<Float>.zero)
                    var i = w * chunk
                    while i < (w + 1) * chunk {
                        let r = UnsafeRawPointer(p + i)
                        a0 += r.loadUnaligned(as: SIMD8<Float>.self)
                        a1 += r.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
                        a2 += r.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self)
                        a3 += r.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self)
                        i += 32
                    }
                    if (a0 + a1 + a2 + a3).sum() == -1 { print("") }
                }
            })
        }
        return Double(n * 4) / Statistics.median(Array(t.dropFirst())) / 1e9
    }

    /// Floating-point operations per second of `reroute_fma_peak_loop` at the width of `isa` on
    /// `threads` threads at once (the best of `repeats` timings of `iterations` loop trips per
    /// thread): the machine's arithmetic peak, the bound no kernel of that width beats. The best,
    /// not the median: a register-only loop touches no memory, so a shared machine can only slow
    /// a window down (another tenant, a preempted thread), and the limit is the fastest window.
    public static func fmaPeak(_ isa: VectorISA, threads: Int, iterations: Int = 20_000_000, repeats: Int = 3) -> Double {
        precondition(isa <= VectorISA.widest, "\(isa) is not supported by this CPU")
        let flops = UnsafeMutableBufferPointer<Double>.allocate(capacity: threads)
        defer { flops.deallocate() }
        let address = UInt(bitPattern: flops.baseAddress!)
        var rates: [Double] = []
        for _ in 0..<repeats {
            let seconds = Statistics.seconds {
                DispatchQueue.concurrentPerform(iterations: threads) { t in
                    UnsafeMutablePointer<Double>(bitPattern: address)![t] = reroute_fma_peak_loop(isa.code, iterations)
                }
            }
            rates.append(flops.reduce(0, +) / seconds)
        }
        return rates.max()!
    }

    /// memcpy of 256 MiB; bytes read + written per second.
    public static func memcpyBandwidth(repeats: Int) -> Double {
        let n = 256 << 20
        let src = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64), dst = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        defer { src.deallocate(); dst.deallocate() }
        memset(src, 1, n)
        memset(dst, 0, n)
        var t: [Double] = []
        for _ in 0..<(repeats + 1) { t.append(Statistics.seconds { memcpy(dst, src, n) }) }
        return 2 * Double(n) / Statistics.median(Array(t.dropFirst())) / 1e9
    }
}
