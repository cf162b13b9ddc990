import RerouteModel

/// Result of a reference prefill.
public struct ReferencePrefill: Sendable {
    /// `hiddenStates[l]` is the `[S][d]` residual stream entering layer l; index L is the
    /// output of the last layer (before the final norm). Rows a layer did not process are
    /// carried through unchanged.
    public var hiddenStates: [[[Double]]]
    /// Logits `[V]` of the last prefill position.
    public var lastLogits: [Double]
    /// Per-layer KV caches after the prefill.
    public var caches: [LayerKVCache]
    /// The plan that was executed (decode reads each layer's `decodePosition`).
    public var plan: ExecutionPlan
}

/// Result of greedy decoding.
public struct ReferenceDecode: Sendable {
    /// Generated tokens; `tokens[k] = argmax(stepLogits[k])`.
    public var tokens: [Int]
    /// `stepLogits[0]` is the prefill's last-position logits; `stepLogits[k]` the logits
    /// after feeding `tokens[k-1]`.
    public var stepLogits: [[Double]]
    /// Caches after decoding (prefill entries plus one entry per fed token per layer).
    public var caches: [LayerKVCache]
}

/// Prefill state between layers: what has been computed so far.
public struct ReferenceState: Sendable {
    /// Hidden states entering layer 0, 1, …, up to the next layer to run.
    public var hiddenStates: [[[Double]]]
    public var caches: [LayerKVCache] = []
    public var plans: [LayerPlan] = []
    /// S of the prefill (generated tokens are numbered from it).
    public var sequenceLength: Int

    public init(hiddenStates: [[[Double]]], caches: [LayerKVCache] = [], plans: [LayerPlan] = [], sequenceLength: Int? = nil) {
        self.hiddenStates = hiddenStates
        self.sequenceLength = sequenceLength ?? hiddenStates.first?.count ?? 0
        self.caches = caches
        self.plans = plans
    }
}

/// The scalar reference decoder (SPEC.md §2, §4, §5): a LLaMA / Qwen2 decoder written as the
/// spec's formulas, executing an `ExecutionPlan` (which tokens each layer processes, at
/// which positions). Deliberately simple and slow; every sum is a `Double`.
public struct ReferenceDecoder: Sendable {
    public let weights: ModelWeights
    public var config: ModelConfig { weights.config }
    let inverseFrequencies: [Double]

    public init(weights: ModelWeights) {
        precondition(!weights.layers.contains { [$0.q, $0.k, $0.v, $0.o, $0.gate, $0.up, $0.down].contains(where: \.isMapped) }
                     && !weights.embedding.isMapped && !weights.lmHead.isMapped,
                     "ReferenceDecoder needs f32 weights: load them with storage: .float32")
        self.weights = weights
        inverseFrequencies = ReferenceMath.ropeInverseFrequencies(headDim: weights.config.headDim,
                                                                 theta: weights.config.ropeTheta)
    }

    /// The prefill input `X[S][d]` (§2.1): token embeddings of the prefix, the visual
    /// embeddings (projected features, or given directly), token embeddings of the suffix.
    public func inputEmbeddings(_ c: PromptCase) -> [[Double]] {
        var x = c.prefixTokens.map { ReferenceMath.embed($0, weights.embedding) }
        switch c.visual {
        case .embeddings(let m):
            for r in 0..<m.rows { x.append(m.row(r).map(Double.init)) }
        case .features(let m):
            guard let p = weights.projector else { preconditionFailure("case validated without a projector") }
            for r in 0..<m.rows { x.append(ReferenceMath.project(m.row(r).map(Double.init), p)) }
        }
        x += c.suffixTokens.map { ReferenceMath.embed($0, weights.embedding) }
        return x
    }

    /// Prefill (§5): for each layer l, the tokens `A = plan[l].active` run through the
    /// block; every other row is carried unchanged. Logits of the last position follow.
    public func prefill(_ c: PromptCase, plan: ExecutionPlan) -> ReferencePrefill {
        precondition(plan.layers.count == config.layers, "plan has \(plan.layers.count) layers, model \(config.layers)")
        var state = ReferenceState(hiddenStates: [inputEmbeddings(c)], sequenceLength: c.sequenceLength)
        for (l, layerPlan) in plan.layers.enumerated() { run(layer: l, plan: layerPlan, state: &state) }
        return finish(state)
    }

    /// The prefill result of a state in which every layer has run.
    public func finish(_ state: ReferenceState) -> ReferencePrefill {
        precondition(state.plans.count == config.layers, "finish after \(state.plans.count) of \(config.layers) layers")
        let h = state.hiddenStates[config.layers]
        return ReferencePrefill(hiddenStates: state.hiddenStates, lastLogits: logits(h[h.count - 1]), caches: state.caches,
                                plan: ExecutionPlan(layers: state.plans))
    }

    /// One decoder block on the active rows (§2): pre-norm attention and SwiGLU MLP with
    /// residuals. Active token i attends to the active tokens at or before it.
    func block(layer l: Int, hidden: [[Double]], plan: LayerPlan, cache: inout LayerKVCache) -> [[Double]] {
        let w = weights.layers[l]
        let c = config
        var queries: [[Double]] = []
        for (i, token) in plan.active.enumerated() {
            let x = ReferenceMath.rmsNorm(hidden[token], weight: w.inputNorm, eps: c.rmsNormEps)
            let q = ReferenceMath.linear(x, w.q, bias: w.qBias)
            let k = ReferenceMath.linear(x, w.k, bias: w.kBias)
            let v = ReferenceMath.linear(x, w.v, bias: w.vBias)
            let position = c.ropePositions(plan.positions, token: i)
            queries.append(ReferenceMath.ropeHeads(q, heads: c.heads, positions: position, inverseFrequencies: inverseFrequencies))
            cache.append(token: token, position: position,
                         key: ReferenceMath.ropeHeads(k, heads: c.kvHeads, positions: position, inverseFrequencies: inverseFrequencies),
                         value: v)
        }
        var out = hidden
        for (i, token) in plan.active.enumerated() {
            // Causal: the active tokens up to and including i (the plan lists them ascending).
            let attended = ReferenceMath.attend(query: queries[i], keys: Array(cache.keys[0...i]), values: Array(cache.values[0...i]),
                                                heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim)
            out[token] = residualTail(layer: l, input: hidden[token], attended: attended)
        }
        return out
    }

    /// The rest of a block after attention: `h = x + W_o a`, `y = h + MLP(RMSNorm(h))`.
    func residualTail(layer l: Int, input x: [Double], attended: [Double]) -> [Double] {
        let w = weights.layers[l]
        let o = ReferenceMath.linear(attended, w.o)
        var h = x
        for i in 0..<h.count { h[i] += o[i] }
        let m = ReferenceMath.swiGLU(ReferenceMath.rmsNorm(h, weight: w.postNorm, eps: config.rmsNormEps),
                                     gate: w.gate, up: w.up, down: w.down)
        for i in 0..<h.count { h[i] += m[i] }
        return h
    }

    /// LM head (§2.9): `logits = W_lm · RMSNorm_final(h)`.
    public func logits(_ h: [Double]) -> [Double] {
        ReferenceMath.linear(ReferenceMath.rmsNorm(h, weight: weights.finalNorm, eps: config.rmsNormEps), weights.lmHead)
    }

    /// Greedy decode (§4): no routing. Step t feeds the previous token at every layer l at
    /// position `plan[l].decodePosition + t`, attending to that layer's whole cache.
    public func greedyDecode(after prefill: ReferencePrefill, steps: Int, sequenceLength: Int) -> ReferenceDecode {
        var caches = prefill.caches
        var stepLogits = [prefill.lastLogits]
        var tokens: [Int] = []
        let c = config
        for t in 0..<steps {
            let token = ReferenceMath.argmax(stepLogits[t])
            tokens.append(token)
            if t == steps - 1 { break }
            var x = ReferenceMath.embed(token, weights.embedding)
            for l in 0..<c.layers {
                let w = weights.layers[l]
                // Decode tokens sit at the same position on every axis (SPEC.md §4).
                let position = Array(repeating: prefill.plan.layers[l].decodePosition + t, count: c.headDim / 2)
                let xn = ReferenceMath.rmsNorm(x, weight: w.inputNorm, eps: c.rmsNormEps)
                let q = ReferenceMath.ropeHeads(ReferenceMath.linear(xn, w.q, bias: w.qBias), heads: c.heads,
                                                positions: position, inverseFrequencies: inverseFrequencies)
                let k = ReferenceMath.ropeHeads(ReferenceMath.linear(xn, w.k, bias: w.kBias), heads: c.kvHeads,
                                                positions: position, inverseFrequencies: inverseFrequencies)
                caches[l].append(token: sequenceLength + t, position: position, key: k,
                                 value: ReferenceMath.linear(xn, w.v, bias: w.vBias))
                let a = ReferenceMath.attend(query: q, keys: caches[l].keys, values: caches[l].values,
                                             heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim)
                x = residualTail(layer: l, input: x, attended: a)
            }
            stepLogits.append(logits(x))
        }
        // One row of logits per generated token: none when no token is asked for.
        return ReferenceDecode(tokens: tokens, stepLogits: Array(stepLogits.prefix(steps)), caches: caches)
    }
}
