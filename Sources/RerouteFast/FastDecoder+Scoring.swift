import CBLAS
import CRerouteKernels
import Foundation
import RerouteModel

extension FastDecoder {
    /// Hidden states entering `layer`, widened to Double (content-based adapters read them).
    public func hiddenStates(entering layer: Int, rows: [Int], state: FastState) -> [[Double]] {
        guard let input = state.input(of: layer) else { preconditionFailure("hidden states entering layer \(layer) are not kept") }
        let d = config.hiddenSize
        return rows.map { r in (0..<d).map { Double(input[r * d + $0]) } }
    }

    /// Scoring attention (SPEC.md §8.1) computing only what the scorer reads: K for the keys
    /// (one sgemm), Q for the query rows only, then one sgemv per head and query row; never
    /// the S×S matrix.
    public func attentionProbabilities(_ r: ScoreRequest, state: FastState) -> ScoreAnswer<ScoredKeys> {
        guard let input = state.input(of: r.layer) else { preconditionFailure("scores for layer \(r.layer): its input is not kept") }
        let c = config, w = weights.layers[r.layer], d = c.hiddenSize, kvW = c.kvWidth, qW = c.queryWidth, dh = c.headDim
        let n = r.keys.count
        // The keys go to the answer (the layer's run may reuse them); the normalised rows stay in `state.scoreRows`.
        let keys = normedRowsAndKeys(layer: r.layer, rows: r.keys, positions: r.keyPositions, input: input, state: state)
        var rowOfToken = [Int](repeating: -1, count: state.sequenceLength)
        var positions = [SIMD3<Int>](repeating: .zero, count: n)
        for i in 0..<n {
            rowOfToken[r.keys[i]] = i
            positions[i] = r.keyPositions.column(i)
        }
        let xn = state.scoreRows
        let scale = 1 / Float(dh).squareRoot()
        let probabilities = r.queryRows.map { row in
            var q = [Float](repeating: 0, count: qW)
            xn.withUnsafeBufferPointer { xp in
                q.withUnsafeMutableBufferPointer { gemv(w.q, xp.baseAddress! + row * d, into: $0.baseAddress!) }
            }
            if let b = w.qBias { for i in 0..<qW { q[i] += b[i] } }
            let (cs, sn) = rotation(frequencyPositions: c.ropePositions(r.keyPositions, token: row))
            q.withUnsafeMutableBufferPointer { qp in
                cs.withUnsafeBufferPointer { cp in sn.withUnsafeBufferPointer { sp in
                    Kernels.rope(qp.baseAddress!, heads: c.heads, headDim: dh, cos: cp.baseAddress!, sin: sp.baseAddress!, isa: isa)
                } }
            }
            // Causal: keys up to the query's sequence index (keys are ascending).
            let visible = r.keys.firstIndex { $0 > r.keys[row] } ?? n
            return (0..<c.heads).map { head in
                var s = [Float](repeating: 0, count: visible)
                keys.withUnsafeBufferPointer { kp in
                    q.withUnsafeBufferPointer { qp in
                        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(visible), Int32(dh), scale, kp.baseAddress! + (head / c.groupSize) * dh,
                                    Int32(kvW), qp.baseAddress! + head * dh, 1, 0, &s, 1)
                    }
                }
                s.withUnsafeMutableBufferPointer { Kernels.softmax($0.baseAddress!, count: visible, isa: isa) }
                return s.map(Double.init) + [Double](repeating: 0, count: n - visible)
            }
        }
        return ScoreAnswer(probabilities: probabilities,
                           reuse: ScoredKeys(layer: r.layer, rowOfToken: rowOfToken, positions: positions, keys: keys))
    }

    /// Layer `layer`'s input norm of `rows` (left in `state.scoreRows`, row i at `i·d`) and
    /// their keys after RoPE at `positions`, `[rows][H_kv·d_head]` flattened.
    func normedRowsAndKeys(layer: Int, rows: [Int], positions: PositionIDs, input: [Float], state: FastState) -> [Float] {
        let c = config, w = weights.layers[layer], d = c.hiddenSize, kvW = c.kvWidth, dh = c.headDim
        let n = rows.count, eps = Float(c.rmsNormEps)
        var keys = [Float](repeating: 0, count: n * kvW)
        input.withUnsafeBufferPointer { h in
            w.inputNorm.withUnsafeBufferPointer { wn in
                state.scoreRows.withUnsafeMutableBufferPointer { xp in
                    for i in 0..<n { Kernels.rmsNorm(h.baseAddress! + rows[i] * d, wn.baseAddress!, xp.baseAddress! + i * d, count: d, eps: eps, isa: isa) }
                }
            }
        }
        state.scoreRows.withUnsafeBufferPointer { xp in
            keys.withUnsafeMutableBufferPointer { kp in
                state.packedRows.withUnsafeMutableBufferPointer { pr in
                    gemm(xp.baseAddress!, rows: n, inner: d, matrix: w.k, bias: w.kBias, into: kp.baseAddress!, packed: packed?[layer].k,
                         rowsPacked: packRows(xp.baseAddress!, rows: n, inner: d, into: pr.baseAddress!))
                }
                state.cosTable.withUnsafeMutableBufferPointer { ct in
                    state.sinTable.withUnsafeMutableBufferPointer { st in
                        fillRotations(positions, cos: ct.baseAddress!, sin: st.baseAddress!)
                        for i in 0..<n {
                            Kernels.rope(kp.baseAddress! + i * kvW, heads: c.kvHeads, headDim: dh, cos: ct.baseAddress! + i * dh / 2,
                                         sin: st.baseAddress! + i * dh / 2, isa: isa)
                        }
                    }
                }
            }
        }
        return keys
    }

    /// Layer `layer`'s keys after RoPE for `rows` at `positions` (what it caches for them),
    /// widened to Double: one sgemm, as for scoring.
    public func rotatedKeys(layer: Int, rows: [Int], positions: PositionIDs, state: FastState) -> [[Double]] {
        guard let input = state.input(of: layer) else { preconditionFailure("keys of layer \(layer): its input is not kept") }
        let kvW = config.kvWidth
        let keys = normedRowsAndKeys(layer: layer, rows: rows, positions: positions, input: input, state: state)
        return rows.indices.map { i in (0..<kvW).map { Double(keys[i * kvW + $0]) } }
    }

    /// The final RMSNorm of each row (the LM head's input), with the vector path's kernel.
    public func finalNormed(_ rows: [[Double]]) -> [[Double]] {
        let d = config.hiddenSize, eps = Float(config.rmsNormEps)
        return rows.map { row in
            let x = row.map(Float.init)
            var out = [Float](repeating: 0, count: d)
            x.withUnsafeBufferPointer { xp in
                weights.finalNorm.withUnsafeBufferPointer { wn in Kernels.rmsNorm(xp.baseAddress!, wn.baseAddress!, &out, count: d, eps: eps, isa: isa) }
            }
            return out.map(Double.init)
        }
    }

    public func prefillOutputs(_ state: FastState) -> PrefillOutputs {
        let s = state.sequenceLength, d = config.hiddenSize
        let hidden: [[[Float]]] = options.recordHiddenStates
            ? state.layerInputs.map { flat in (0..<s).map { Array(flat[($0 * d)..<(($0 + 1) * d)]) } } : []
        return PrefillOutputs(hiddenStates: hidden, lastLogits: logits(ofRow: s - 1, in: state.hidden),
                              kvLength: state.kvCount, plans: state.plans)
    }

    /// `W_lm · RMSNorm_final(h_row)` with one sgemv.
    func logits(ofRow row: Int, in hidden: [Float]) -> [Float] {
        let d = config.hiddenSize
        var xn = [Float](repeating: 0, count: d)
        hidden.withUnsafeBufferPointer { h in
            weights.finalNorm.withUnsafeBufferPointer { wn in
                Kernels.rmsNorm(h.baseAddress! + row * d, wn.baseAddress!, &xn, count: d, eps: Float(config.rmsNormEps), isa: isa)
            }
        }
        return lmHead(xn)
    }

    func lmHead(_ xn: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: config.vocabSize)
        gemvRows(weights.lmHead, xn, &out)
        return out
    }

    /// `out = W x` with W's rows split over the workers (decode streams the weights once).
    func gemvRows(_ w: Matrix, _ x: [Float], _ out: inout [Float]) {
        x.withUnsafeBufferPointer { xp in out.withUnsafeMutableBufferPointer { gemvSplit(w, xp.baseAddress!, into: $0.baseAddress!) } }
    }

    /// `y = W x` with W's rows split over the workers when W is large enough for the split to
    /// pay (each part one single-threaded sgemv; a row's sum is computed the same way whatever
    /// the split, so the result does not depend on it).
    func gemvSplit(_ w: Matrix, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        let parts = w.rows >= 256 * workers ? workers : 1
        guard parts > 1 else { return gemv(w, rows: 0..<w.rows, x, into: y) }
        let chunk = (w.rows + parts - 1) / parts
        let (xa, ya) = (UInt(bitPattern: x), UInt(bitPattern: y))
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let r0 = part * chunk, r1 = min(w.rows, r0 + chunk)
            guard r0 < r1 else { return }
            gemv(w, rows: r0..<r1, UnsafePointer<Float>(bitPattern: xa)!, into: UnsafeMutablePointer<Float>(bitPattern: ya)!)
        }
    }

    /// One input's products at a decode step, `out_j = W_j · x (+ b_j)`, in one pass of the
    /// workers. A decode step is a one-row product, so with packed weights (`packedRowLimit ≥ 1`)
    /// each matrix's panels are split over the workers and run by the packed gemv, which gives
    /// the packed product's row bit for bit; otherwise each matrix is one `gemvSplit`.
    func decodeProducts(_ x: UnsafePointer<Float>, _ products: [(matrix: Matrix, packed: PackedWeight?, bias: [Float]?, out: UnsafeMutablePointer<Float>)]) {
        if products.allSatisfy({ $0.packed != nil }), packedRowLimit >= 1 {
            let parts = workers
            let xa = UInt(bitPattern: x)
            let jobs = products.map { (packed: $0.packed!, out: UInt(bitPattern: $0.out)) }
            DispatchQueue.concurrentPerform(iterations: parts) { part in
                for job in jobs {
                    let chunk = (job.packed.panels + parts - 1) / parts
                    let p0 = part * chunk, p1 = min(job.packed.panels, p0 + chunk)
                    guard p0 < p1 else { continue }
                    job.packed.values.withUnsafeBufferPointer { pp in
                        reroute_packed_gemv(isa.code, Int32(job.packed.rows), Int32(job.packed.cols), UnsafePointer<Float>(bitPattern: xa),
                                            pp.baseAddress!, UnsafeMutablePointer<Float>(bitPattern: job.out), Int32(p0), Int32(p1))
                    }
                }
            }
        } else {
            for product in products { gemvSplit(product.matrix, x, into: product.out) }
        }
        for product in products { addBias(product.bias, rows: 1, out: product.matrix.rows, into: product.out) }
    }

    /// Greedy decode (SPEC.md §4): one token through every layer with sgemv, attending to
    /// that layer's cache; no routing.
    public func greedyDecode(_ state: inout FastState, steps: Int) -> DecodeOutputs {
        let c = config, d = c.hiddenSize, qW = c.queryWidth, kvW = c.kvWidth, m = c.intermediateSize, dh = c.headDim
        let eps = Float(c.rmsNormEps)
        var stepLogits = [logits(ofRow: state.sequenceLength - 1, in: state.hidden)]
        var tokens: [Int] = []
        // One step's vectors: x, its norm, the attention and MLP outputs, q, the heads' outputs, k, v, gate, up.
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 3 * d + 2 * qW + 2 * kvW + 2 * m)
        buffer.initialize(repeating: 0, count: 3 * d + 2 * qW + 2 * kvW + 2 * m)
        defer { buffer.deallocate() }
        let x = buffer, xn = x + d, o = xn + d, q = o + d, a = q + qW, k = a + qW, v = k + kvW, g = v + kvW, u = g + m
        for t in 0..<steps {
            let last = stepLogits[t]
            var best = 0
            for i in 1..<last.count where last[i] > last[best] { best = i }
            tokens.append(best)
            if t == steps - 1 { break }
            weights.embedding.widenRows(best, best + 1, into: x)
            for l in 0..<c.layers {
                let w = weights.layers[l], p = packed?[l]
                let position = state.plans[l].decodePosition + t
                Kernels.rmsNorm(x, w.inputNorm, xn, count: d, eps: eps, isa: isa)
                decodeProducts(xn, [(w.q, p?.q, w.qBias, q), (w.k, p?.k, w.kBias, k), (w.v, p?.v, w.vBias, v)])
                let (cs, sn) = rotation(position)
                Kernels.rope(q, heads: c.heads, headDim: dh, cos: cs, sin: sn, isa: isa)
                Kernels.rope(k, heads: c.kvHeads, headDim: dh, cos: cs, sin: sn, isa: isa)
                let n = state.kvCount[l]
                precondition(n < state.kvCapacity[l], "layer \(l): KV cache full (\(n))")
                for i in 0..<kvW { state.keys[l][n * kvW + i] = k[i]; state.values[l][n * kvW + i] = v[i] }
                state.kvCount[l] = n + 1
                var s = [Float](repeating: 0, count: n + 1)
                for head in 0..<c.heads {
                    let gi = head / c.groupSize
                    state.keys[l].withUnsafeBufferPointer { kp in
                        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n + 1), Int32(dh), 1 / Float(dh).squareRoot(),
                                    kp.baseAddress! + gi * dh, Int32(kvW), q + head * dh, 1, 0, &s, 1)
                    }
                    s.withUnsafeMutableBufferPointer { Kernels.softmax($0.baseAddress!, count: n + 1, isa: isa) }
                    state.values[l].withUnsafeBufferPointer { vp in
                        cblas_sgemv(CblasRowMajor, CblasTrans, Int32(n + 1), Int32(dh), 1, vp.baseAddress! + gi * dh, Int32(kvW),
                                    s, 1, 0, a + head * dh, 1)
                    }
                }
                decodeProducts(a, [(w.o, p?.o, nil, o)])
                Kernels.add(x, o, count: d)
                Kernels.rmsNorm(x, w.postNorm, xn, count: d, eps: eps, isa: isa)
                decodeProducts(xn, [(w.gate, p?.gate, nil, g), (w.up, p?.up, nil, u)])
                Kernels.swiGLU(g, u, count: m, isa: isa)
                decodeProducts(g, [(w.down, p?.down, nil, o)])
                Kernels.add(x, o, count: d)
            }
            var xf = [Float](repeating: 0, count: d)
            Kernels.rmsNorm(x, weights.finalNorm, &xf, count: d, eps: eps, isa: isa)
            stepLogits.append(lmHead(xf))
        }
        // One row of logits per generated token: none when no token is asked for.
        return DecodeOutputs(tokens: tokens, stepLogits: Array(stepLogits.prefix(steps)), kvLength: state.kvCount)
    }
}
