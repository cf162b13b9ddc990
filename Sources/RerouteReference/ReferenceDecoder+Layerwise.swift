import RerouteModel

extension ReferenceDecoder: TraceableDecoder {
    public var name: String { "reference" }

    /// The reference keeps plain growing arrays; `kvCapacity` is not needed.
    public func begin(_ c: PromptCase, kvCapacity: [Int]?) throws -> ReferenceState {
        ReferenceState(hiddenStates: [inputEmbeddings(c)], sequenceLength: c.sequenceLength)
    }

    public func prefillOutputs(_ state: ReferenceState) -> PrefillOutputs {
        let p = finish(state)
        return PrefillOutputs(hiddenStates: p.hiddenStates.map { $0.map { $0.map(Float.init) } }, lastLogits: p.lastLogits.map(Float.init),
                              kvLength: p.caches.map(\.count), plans: p.plan.layers)
    }

    public func greedyDecode(_ state: inout ReferenceState, steps: Int) -> DecodeOutputs {
        let d = greedyDecode(after: finish(state), steps: steps, sequenceLength: state.sequenceLength)
        state.caches = d.caches
        return DecodeOutputs(tokens: d.tokens, stepLogits: d.stepLogits.map { $0.map(Float.init) }, kvLength: d.caches.map(\.count))
    }

    /// The reference computes everything a layer needs itself: it reuses nothing.
    public func run(layer l: Int, plan: LayerPlan, state: inout ReferenceState, reusing: Never?) {
        precondition(state.plans.count == l, "layer \(l) run out of order (\(state.plans.count) done)")
        var cache = LayerKVCache()
        let out = block(layer: l, hidden: state.hiddenStates[l], plan: plan, cache: &cache)
        state.hiddenStates.append(out)
        state.caches.append(cache)
        state.plans.append(plan)
    }

    public func hiddenStates(entering layer: Int, rows: [Int], state: ReferenceState) -> [[Double]] {
        precondition(layer < state.hiddenStates.count, "hidden states entering layer \(layer) before they exist")
        return rows.map { state.hiddenStates[layer][$0] }
    }

    /// Layer `layer`'s keys after RoPE (SPEC.md §3): `RoPE(W_k · RMSNorm(h) + b_k)` at
    /// `positions` (one column per row), on the hidden states entering `layer`.
    public func rotatedKeys(layer: Int, rows: [Int], positions: PositionIDs, state: ReferenceState) -> [[Double]] {
        precondition(layer < state.hiddenStates.count, "keys of layer \(layer) before its input exists")
        let w = weights.layers[layer], c = config
        return rows.enumerated().map { i, row in
            let normed = ReferenceMath.rmsNorm(state.hiddenStates[layer][row], weight: w.inputNorm, eps: c.rmsNormEps)
            return ReferenceMath.ropeHeads(ReferenceMath.linear(normed, w.k, bias: w.kBias), heads: c.kvHeads,
                                           positions: c.ropePositions(positions, token: i), inverseFrequencies: inverseFrequencies)
        }
    }

    /// The final RMSNorm (the LM head's input, SPEC.md §3) of each row.
    public func finalNormed(_ rows: [[Double]]) -> [[Double]] {
        rows.map { ReferenceMath.rmsNorm($0, weight: weights.finalNorm, eps: config.rmsNormEps) }
    }

    /// Scoring attention (SPEC.md §8.1): layer `r.layer`'s input norm, Q/K (+ bias) and
    /// RoPE on the hidden states entering that layer, causal softmax over `r.keys`.
    public func attentionProbabilities(_ r: ScoreRequest, state: ReferenceState) -> ScoreAnswer<Never> {
        ScoreAnswer(probabilities: probabilities(r, state: state))
    }

    func probabilities(_ r: ScoreRequest, state: ReferenceState) -> [[[Double]]] {
        precondition(r.layer < state.hiddenStates.count, "scores for layer \(r.layer) before its input exists")
        let w = weights.layers[r.layer]
        let c = config
        let hidden = state.hiddenStates[r.layer]
        let normed = r.keys.map { ReferenceMath.rmsNorm(hidden[$0], weight: w.inputNorm, eps: c.rmsNormEps) }
        let keys = normed.indices.map { j in
            ReferenceMath.ropeHeads(ReferenceMath.linear(normed[j], w.k, bias: w.kBias), heads: c.kvHeads,
                                    positions: c.ropePositions(r.keyPositions, token: j), inverseFrequencies: inverseFrequencies)
        }
        let scale = 1.0 / Double(c.headDim).squareRoot()
        let dh = c.headDim
        return r.queryRows.map { row in
            let q = ReferenceMath.ropeHeads(ReferenceMath.linear(normed[row], w.q, bias: w.qBias), heads: c.heads,
                                            positions: c.ropePositions(r.keyPositions, token: row), inverseFrequencies: inverseFrequencies)
            let visible = r.keys.indices.filter { r.keys[$0] <= r.keys[row] }  // causal
            return (0..<c.heads).map { h in
                let g = h / c.groupSize
                let s = visible.map { j in
                    var dot = 0.0
                    for e in 0..<dh { dot += q[h * dh + e] * keys[j][g * dh + e] }
                    return dot * scale
                }
                let p = ReferenceMath.softmax(s)
                var row = [Double](repeating: 0, count: r.keys.count)
                for (i, j) in visible.enumerated() { row[j] = p[i] }
                return row
            }
        }
    }
}

extension ReferenceDecoder {
    /// Layer `l`'s output for the hidden states `input` entering it (`[S][d]`), running
    /// `plan` (§5): the layer alone, with its own KV cache.
    public func layerOutput(layer l: Int, input: [[Double]], plan: LayerPlan) -> [[Double]] {
        var cache = LayerKVCache()
        return block(layer: l, hidden: input, plan: plan, cache: &cache)
    }
}
