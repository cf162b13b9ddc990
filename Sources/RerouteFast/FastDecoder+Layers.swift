import CBLAS
import CRerouteKernels
import Foundation
import RerouteModel

extension FastDecoder: TraceableDecoder {
    public var name: String { "fast" }
    public var vectorPath: String? { isa.rawValue }

    public func begin(_ c: PromptCase, kvCapacity: [Int]?) throws -> FastState {
        let s = c.sequenceLength, d = config.hiddenSize
        let state = FastState(sequenceLength: s, config: config,
                              capacity: kvCapacity ?? Array(repeating: s + max(0, c.decodeSteps - 1), count: config.layers), workers: workers,
                              scoresPerWorker: isa >= .avx2 ? reroute_attention_workspace_count(Int32(s), Int32(config.headDim)) : s * s,
                              packedRowsCount: usesPackedWeights
                                  ? reroute_packed_rows_count(Int32(min(s, packedRowLimit)),
                                                              Int32(max(d, config.queryWidth, config.intermediateSize))) : 0)
        state.hidden.withUnsafeMutableBufferPointer { h in
            var row = 0
            func embed(_ t: Int) {
                weights.embedding.widenRows(t, t + 1, into: h.baseAddress! + row * d)
                row += 1
            }
            c.prefixTokens.forEach(embed)
            switch c.visual {
            case .embeddings(let m):
                m.values.withUnsafeBufferPointer { Kernels.copy(h.baseAddress! + row * d, $0.baseAddress!, count: m.values.count) }
                row += m.rows
            case .features(let m):
                project(m, into: h.baseAddress! + row * d)
                row += m.rows
            }
            c.suffixTokens.forEach(embed)
        }
        if options.recordHiddenStates { state.layerInputs = [state.hidden] }
        return state
    }

    /// The projector on all feature rows: the merger's per-patch RMSNorm (Qwen2.5-VL), two
    /// sgemms and an exact GELU.
    func project(_ f: Matrix, into out: UnsafeMutablePointer<Float>) {
        guard let p = weights.projector else { preconditionFailure("case validated without a projector") }
        let n = f.rows, d = config.hiddenSize, width = p.linear1.rows
        var x = f.values
        if let w = p.featureNorm {
            w.withUnsafeBufferPointer { wp in
                x.withUnsafeMutableBufferPointer { xp in
                    for start in stride(from: 0, to: xp.count, by: w.count) {
                        Kernels.rmsNorm(xp.baseAddress! + start, wp.baseAddress!, xp.baseAddress! + start, count: w.count,
                                        eps: Float(ProjectorWeights.featureNormEps), isa: isa)
                    }
                }
            }
        }
        var h = [Float](repeating: 0, count: n * width)
        gemm(x, rows: n, inner: f.cols, weight: p.linear1, bias: p.bias1, into: &h)
        for i in 0..<h.count { h[i] = 0.5 * h[i] * (1 + erff(h[i] * 0.70710678118654752)) }
        var y = [Float](repeating: 0, count: n * d)
        gemm(h, rows: n, inner: width, weight: p.linear2, bias: p.bias2, into: &y)
        y.withUnsafeBufferPointer { Kernels.copy(out, $0.baseAddress!, count: n * d) }
    }

    /// `Y[rows, out] = X[rows, inner] · Wᵀ (+ b)` on arrays.
    func gemm(_ x: [Float], rows: Int, inner: Int, weight w: Matrix, bias: [Float]?, into y: inout [Float]) {
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                gemm(xp.baseAddress!, rows: rows, inner: inner, matrix: w, bias: bias, into: yp.baseAddress!)
            }
        }
    }

    /// `Y = X · Wᵀ (+ b)`. Output columns (rows of W) are split over the workers, each calling
    /// single-threaded OpenBLAS: at the row counts of routed layers this beats OpenBLAS's own
    /// threading (README, Performance). f32 matrices go straight to sgemm; mapped bf16
    /// matrices are widened in tiles of about 4 MB (exact) per worker, each multiplied as it is
    /// widened, so no f32 copy of the matrix exists (SPEC.md §10.2).
    ///
    /// With `rowsPacked` (`rows` packed by `packRows`), the packed-weight kernel computes the
    /// product instead, its 16-column panels split over the workers: over `packed` when the
    /// matrix was packed whole, else over tiles of W's rows each worker packs as it goes
    /// (`Matrix.packTile`, `options.packedTileFloats` each; mapped bf16 widened as it is packed). Both give the
    /// same bits: a tile's products are those of the whole packed matrix.
    func gemm(_ x: UnsafePointer<Float>, rows: Int, inner: Int, matrix w: Matrix, bias: [Float]?, into y: UnsafeMutablePointer<Float>,
              packed: PackedWeight? = nil, rowsPacked: UnsafePointer<Float>? = nil) {
        precondition(w.cols == inner)
        let out = w.rows
        if let rowsPacked {
            precondition(rows <= packedRowLimit && packed.map { $0.rows == out && $0.cols == inner } != false)
            let nr = Int(REROUTE_PACK_PANEL), panels = (out + nr - 1) / nr
            let parts = panels >= 8 * workers ? workers : 1
            // Even chunks and tiles keep the AVX-512 kernel's panel pairs whole.
            let chunk = ((panels + parts - 1) / parts + 1) / 2 * 2
            let (xa, ya) = (UInt(bitPattern: rowsPacked), UInt(bitPattern: y))
            if let packed {
                packed.values.withUnsafeBufferPointer { pp in
                    let pa = UInt(bitPattern: pp.baseAddress!)
                    DispatchQueue.concurrentPerform(iterations: parts) { part in
                        reroute_packed_gemm(isa.code, Int32(rows), Int32(out), Int32(inner), UnsafePointer<Float>(bitPattern: xa),
                                            UnsafePointer<Float>(bitPattern: pa), UnsafeMutablePointer<Float>(bitPattern: ya),
                                            Int32(out), Int32(min(panels, part * chunk)), Int32(min(panels, (part + 1) * chunk)))
                    }
                }
            } else {
                let tilePanels = max(2, options.packedTileFloats / (nr * max(inner, 1)) / 2 * 2)
                DispatchQueue.concurrentPerform(iterations: parts) { part in
                    let p0 = min(panels, part * chunk), p1 = min(panels, p0 + chunk)
                    guard p0 < p1 else { return }
                    let tile = UnsafeMutablePointer<Float>.allocate(capacity: reroute_packed_count(Int32(min(tilePanels, p1 - p0) * nr), Int32(inner)))
                    defer { tile.deallocate() }
                    for t0 in stride(from: p0, to: p1, by: tilePanels) {
                        let t1 = min(p1, t0 + tilePanels), r0 = t0 * nr, r1 = min(out, t1 * nr)
                        w.packTile(rows: r0, r1, isa: isa, into: tile)
                        reroute_packed_gemm(isa.code, Int32(rows), Int32(r1 - r0), Int32(inner), UnsafePointer<Float>(bitPattern: xa), tile,
                                            UnsafeMutablePointer<Float>(bitPattern: ya)! + r0, Int32(out), 0, Int32(t1 - t0))
                    }
                }
            }
            addBias(bias, rows: rows, out: out, into: y)
            return
        }
        let parts = out >= 128 * workers ? workers : 1
        let chunk = ((out + parts - 1) / parts + 15) / 16 * 16
        let tileRows = w.isMapped ? max(16, (1 << 20) / max(inner, 1)) : out
        let (xa, ya) = (UInt(bitPattern: x), UInt(bitPattern: y))
        @Sendable func multiply(_ weight: UnsafePointer<Float>, rows r0: Int, _ r1: Int) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(r1 - r0), Int32(inner), 1,
                        UnsafePointer<Float>(bitPattern: xa), Int32(inner), weight, Int32(inner), 0,
                        UnsafeMutablePointer<Float>(bitPattern: ya)! + r0, Int32(out))
        }
        w.values.withUnsafeBufferPointer { wp in  // empty when mapped
            let wa = UInt(bitPattern: wp.baseAddress)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                let c0 = part * chunk, c1 = min(out, c0 + chunk)
                guard c0 < c1 else { return }
                guard w.isMapped else { return multiply(UnsafePointer<Float>(bitPattern: wa)! + c0 * inner, rows: c0, c1) }
                let tile = UnsafeMutablePointer<Float>.allocate(capacity: min(tileRows, c1 - c0) * inner)
                defer { tile.deallocate() }
                for r in stride(from: c0, to: c1, by: tileRows) {
                    let r1 = min(c1, r + tileRows)
                    w.widenRows(r, r1, into: tile)
                    multiply(tile, rows: r, r1)
                }
            }
        }
        addBias(bias, rows: rows, out: out, into: y)
    }

    /// `X [rows, inner]` (row-major) packed once into `buffer` (at least
    /// `reroute_packed_rows_count(rows, inner)` floats) for every packed-weight product of these
    /// rows, its tiles split over the workers; nil where products of `rows` rows run on OpenBLAS
    /// (more rows than `packedRowLimit`, which is 0 where the packed kernel is not used).
    func packRows(_ x: UnsafePointer<Float>, rows: Int, inner: Int, into buffer: UnsafeMutablePointer<Float>) -> UnsafePointer<Float>? {
        guard rows > 0, rows <= packedRowLimit else { return nil }
        let tileRows = Int(reroute_pack_tile_rows(isa.code)), tiles = (rows + tileRows - 1) / tileRows
        let parts = tiles >= 2 * workers ? workers : 1, chunk = (tiles + parts - 1) / parts
        let (xa, ba) = (UInt(bitPattern: x), UInt(bitPattern: buffer))
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            reroute_pack_rows(isa.code, Int32(rows), Int32(inner), UnsafePointer<Float>(bitPattern: xa), Int32(inner),
                              UnsafeMutablePointer<Float>(bitPattern: ba), Int32(part * chunk), Int32(min(tiles, (part + 1) * chunk)))
        }
        return UnsafePointer(buffer)
    }

    /// `body` on contiguous ranges that cover `0..<rows`, one per worker, run at once (one range
    /// below 32 rows per worker). `body` must touch only its own rows' outputs; callers do the
    /// same work for a row whichever range holds it, so results do not depend on the split.
    func forEachRowRange(_ rows: Int, _ body: (Range<Int>) -> Void) {
        let parts = rows >= 32 * workers ? workers : 1
        guard parts > 1 else { return rows > 0 ? body(0..<rows) : () }
        let chunk = (rows + parts - 1) / parts
        withoutActuallyEscaping(body) { body in
            // Shared for the duration of this call only; the ranges' writes are disjoint.
            let shared = UncheckedShared(body)
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                let r0 = part * chunk, r1 = min(rows, r0 + chunk)
                if r0 < r1 { shared.value(r0..<r1) }
            }
        }
    }

    func addBias(_ bias: [Float]?, rows: Int, out: Int, into y: UnsafeMutablePointer<Float>) {
        guard let bias else { return }
        bias.withUnsafeBufferPointer { b in
            for r in 0..<rows { Kernels.add(y + r * out, b.baseAddress!, count: out) }
        }
    }

    /// `y = W x` (one vector) for any weight storage; mapped bf16 rows are widened in tiles
    /// of about 1 MB (SPEC.md §10.2).
    func gemv(_ w: Matrix, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        gemv(w, rows: 0..<w.rows, x, into: y)
    }

    /// `y[r] = W[r] · x` for the rows `rows` of W (`y` indexed by W's rows); mapped bf16 rows
    /// are widened tile by tile.
    func gemv(_ w: Matrix, rows: Range<Int>, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        guard !rows.isEmpty else { return }
        guard w.isMapped else {
            return w.values.withUnsafeBufferPointer { wp in
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(rows.count), Int32(w.cols), 1, wp.baseAddress! + rows.lowerBound * w.cols,
                            Int32(w.cols), x, 1, 0, y + rows.lowerBound, 1)
            }
        }
        let tileRows = max(1, (1 << 18) / max(w.cols, 1))
        let tile = UnsafeMutablePointer<Float>.allocate(capacity: min(tileRows, rows.count) * w.cols)
        defer { tile.deallocate() }
        var r = rows.lowerBound
        while r < rows.upperBound {
            let r1 = min(rows.upperBound, r + tileRows)
            w.widenRows(r, r1, into: tile)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(r1 - r), Int32(w.cols), 1, tile, Int32(w.cols), x, 1, 0, y + r, 1)
            r = r1
        }
    }

    /// - Parameter reusing: the keys of a score request for this layer on the same state;
    ///   used when it scored every active token at the position it runs at.
    public func run(layer l: Int, plan: LayerPlan, state st: inout FastState, reusing scored: ScoredKeys?) {
        precondition(st.plans.count == l, "layer \(l) run out of order")
        precondition(plan.active.count <= st.kvCapacity[l], "layer \(l): \(plan.active.count) tokens, cache capacity \(st.kvCapacity[l])")
        let c = config, w = weights.layers[l]
        let n = plan.active.count, d = c.hiddenSize, qW = c.queryWidth, kvW = c.kvWidth, m = c.intermediateSize, dh = c.headDim
        let positions = plan.positions
        let eps = Float(c.rmsNormEps)
        let state = st
        if !options.recordHiddenStates {
            state.previousInput.withUnsafeMutableBufferPointer { p in
                state.hidden.withUnsafeBufferPointer { hp in
                    let (to, from) = (p.baseAddress!, hp.baseAddress!)
                    forEachRowRange(state.sequenceLength) { Kernels.copy(to + $0.lowerBound * d, from + $0.lowerBound * d, count: $0.count * d) }
                }
            }
        }
        state.hidden.withUnsafeMutableBufferPointer { H in
        state.x.withUnsafeMutableBufferPointer { X in
        state.xn.withUnsafeMutableBufferPointer { XN in
        state.q.withUnsafeMutableBufferPointer { Q in
        state.k.withUnsafeMutableBufferPointer { K in
        state.v.withUnsafeMutableBufferPointer { V in
        state.att.withUnsafeMutableBufferPointer { A in
        state.o.withUnsafeMutableBufferPointer { O in
        state.g.withUnsafeMutableBufferPointer { G in
        state.u.withUnsafeMutableBufferPointer { U in
        state.scores.withUnsafeMutableBufferPointer { P in
        state.keys[l].withUnsafeMutableBufferPointer { KC in
        state.values[l].withUnsafeMutableBufferPointer { VC in
        state.cosTable.withUnsafeMutableBufferPointer { CT in
        state.sinTable.withUnsafeMutableBufferPointer { ST in
        state.packedRows.withUnsafeMutableBufferPointer { PR in
            let pw = packed?[l], pr = PR.baseAddress!
            let h = H.baseAddress!, x = X.baseAddress!, xn = XN.baseAddress!, q = Q.baseAddress!, k = K.baseAddress!
            let v = V.baseAddress!, a = A.baseAddress!, o = O.baseAddress!, g = G.baseAddress!, u = U.baseAddress!, p = P.baseAddress!
            // Row-wise work (gathers, norms, RoPE, copies, residuals, SwiGLU) runs on the workers
            // by row ranges. Gather the active rows, then the pre-attention norm. (Index loops:
            // `enumerated()` allocates per element in debug builds, and the run is
            // allocation-free per token.)
            let active = plan.active
            w.inputNorm.withUnsafeBufferPointer { wn in
                let wn = wn.baseAddress!
                forEachRowRange(n) { rows in
                    for i in rows {
                        Kernels.copy(x + i * d, h + active[i] * d, count: d)
                        Kernels.rmsNorm(x + i * d, wn, xn + i * d, count: d, eps: eps, isa: isa)
                    }
                }
            }
            // Keys the decision's scoring already computed from the same input, weights and
            // positions are reused; otherwise k is projected here.
            let reused = scored.flatMap { s in s.layer == l && (0..<n).allSatisfy { s.row(of: active[$0], at: positions.column($0)) != nil } ? s : nil }
            let reuse = reused != nil
            projections(xn, rows: n, layer: w, packed: pw, rowsPacked: packRows(xn, rows: n, inner: d, into: pr), q: q, k: reuse ? nil : k, v: v)
            // RoPE on q and on the projected k (reused keys are already rotated), then k and v
            // into this layer's cache.
            let ct = CT.baseAddress!, stb = ST.baseAddress!, half = dh / 2, kc = KC.baseAddress!, vc = VC.baseAddress!
            let reusedKeys = reused?.keys ?? []
            reusedKeys.withUnsafeBufferPointer { sk in
                forEachRowRange(n) { rows in
                    fillRotations(positions, rows: rows, cos: ct, sin: stb)
                    for i in rows {
                        Kernels.rope(q + i * qW, heads: c.heads, headDim: dh, cos: ct + i * half, sin: stb + i * half, isa: isa)
                        if let reused {
                            Kernels.copy(k + i * kvW, sk.baseAddress! + reused.rowOfToken[active[i]] * kvW, count: kvW)
                        } else {
                            Kernels.rope(k + i * kvW, heads: c.kvHeads, headDim: dh, cos: ct + i * half, sin: stb + i * half, isa: isa)
                        }
                        Kernels.copy(kc + i * kvW, k + i * kvW, count: kvW)
                        Kernels.copy(vc + i * kvW, v + i * kvW, count: kvW)
                    }
                }
            }
            // Causal attention per head over the active tokens: P = QKᵀ/√d_h, softmax, A = P V;
            // heads split over the workers, each with its own part of the score buffer. The
            // vector paths run the attention kernel; the portable path OpenBLAS in row blocks,
            // so a block of queries only multiplies the keys it can see.
            let scale = 1 / Float(dh).squareRoot()
            let block = max(64, (n + 7) / 8)
            let (qa, ka, va, aa, pa) = (UInt(bitPattern: q), UInt(bitPattern: k), UInt(bitPattern: v), UInt(bitPattern: a), UInt(bitPattern: p))
            let perWorker = P.count / workers
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let q = UnsafeMutablePointer<Float>(bitPattern: qa)!, k = UnsafeMutablePointer<Float>(bitPattern: ka)!
            let v = UnsafeMutablePointer<Float>(bitPattern: va)!, a = UnsafeMutablePointer<Float>(bitPattern: aa)!
            let p = UnsafeMutablePointer<Float>(bitPattern: pa)! + worker * perWorker
            for head in stride(from: worker, to: c.heads, by: workers) {
                let gi = head / c.groupSize
                if isa >= .avx2 {
                    reroute_causal_attention(isa.code, Int32(n), Int32(dh), scale, q + head * dh, Int32(qW), k + gi * dh, Int32(kvW),
                                             v + gi * dh, Int32(kvW), a + head * dh, Int32(qW), p)
                    continue
                }
                var r0 = 0
                while r0 < n {
                    let rows = min(block, n - r0), visible = r0 + rows
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(visible), Int32(dh), scale,
                                q + r0 * qW + head * dh, Int32(qW), k + gi * dh, Int32(kvW), 0, p, Int32(visible))
                    for i in 0..<rows {
                        let row = p + i * visible
                        Kernels.softmax(row, count: r0 + i + 1, isa: isa)
                        if r0 + i + 1 < visible { (row + r0 + i + 1).update(repeating: 0, count: visible - r0 - i - 1) }
                    }
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(rows), Int32(dh), Int32(visible), 1, p, Int32(visible),
                                v + gi * dh, Int32(kvW), 0, a + r0 * qW + head * dh, Int32(qW))
                    r0 += rows
                }
            }
            }
            // h = x + W_o a; y = h + MLP(RMSNorm(h)).
            gemm(a, rows: n, inner: qW, matrix: w.o, bias: nil, into: o, packed: pw?.o, rowsPacked: packRows(a, rows: n, inner: qW, into: pr))
            w.postNorm.withUnsafeBufferPointer { wn in
                let wn = wn.baseAddress!
                forEachRowRange(n) { rows in
                    for i in rows {
                        Kernels.add(x + i * d, o + i * d, count: d)
                        Kernels.rmsNorm(x + i * d, wn, xn + i * d, count: d, eps: eps, isa: isa)
                    }
                }
            }
            let xnPacked = packRows(xn, rows: n, inner: d, into: pr)
            gemm(xn, rows: n, inner: d, matrix: w.gate, bias: nil, into: g, packed: pw?.gate, rowsPacked: xnPacked)
            gemm(xn, rows: n, inner: d, matrix: w.up, bias: nil, into: u, packed: pw?.up, rowsPacked: xnPacked)
            // SwiGLU row by row, so a row's elements meet the vector loop and its tail alike
            // whatever the split.
            forEachRowRange(n) { rows in
                for i in rows { Kernels.swiGLU(g + i * m, u + i * m, count: m, isa: isa) }
            }
            gemm(g, rows: n, inner: m, matrix: w.down, bias: nil, into: o, packed: pw?.down, rowsPacked: packRows(g, rows: n, inner: m, into: pr))
            // Residual and scatter back; bypassed rows stay as they are.
            forEachRowRange(n) { rows in
                for i in rows {
                    Kernels.add(x + i * d, o + i * d, count: d)
                    Kernels.copy(h + active[i] * d, x + i * d, count: d)
                }
            }
        } } } } } } } } } } } } } } } }
        st.kvCount[l] = n
        st.plans.append(plan)
        st.layersRun = l + 1
        if options.recordHiddenStates { st.layerInputs.append(st.hidden) }
    }

    /// q, k, v projections (with biases) of `rows` normalised rows (`rowsPacked`: the same rows
    /// from `packRows`, or nil).
    func projections(_ xn: UnsafePointer<Float>, rows n: Int, layer w: LayerWeights, packed p: PackedLayer?,
                     rowsPacked: UnsafePointer<Float>?, q: UnsafeMutablePointer<Float>,
                     k: UnsafeMutablePointer<Float>?, v: UnsafeMutablePointer<Float>) {
        let d = config.hiddenSize
        gemm(xn, rows: n, inner: d, matrix: w.q, bias: w.qBias, into: q, packed: p?.q, rowsPacked: rowsPacked)
        if let k { gemm(xn, rows: n, inner: d, matrix: w.k, bias: w.kBias, into: k, packed: p?.k, rowsPacked: rowsPacked) }
        gemm(xn, rows: n, inner: d, matrix: w.v, bias: w.vBias, into: v, packed: p?.v, rowsPacked: rowsPacked)
    }
}
