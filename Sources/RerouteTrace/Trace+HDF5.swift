import Foundation
import RerouteHDF5
import RerouteModel
import RerouteRouting

extension Trace {
    /// Writes the trace atomically (temporary file, then rename). An existing file is
    /// replaced only with `overwrite`.
    public func write(to path: String, overwrite: Bool = false) throws {
        let w = try HDF5Writer(creating: path, overwrite: overwrite)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        func json<T: Encodable>(_ v: T) throws -> String { String(decoding: try enc.encode(v), as: UTF8.self) }
        let L = config.layers, S = sequenceLength, d = config.hiddenSize
        try w.setAttribute("schema", Self.schema)
        try w.setAttribute("schema_version", Self.schemaVersion)
        try w.setAttribute("producer", provenance.producer)
        try w.setAttribute("producer_version", provenance.producerVersion)
        try w.setAttribute("producer_commit", provenance.producerCommit)
        try w.setAttribute("decoder", provenance.decoder)
        try w.setAttribute("mode", provenance.mode.rawValue)
        if let dtype = provenance.dtype { try w.setAttribute("dtype", dtype) }
        if let isa = provenance.isa { try w.setAttribute("isa", isa) }
        try w.setAttribute("model", provenance.model)
        try w.setAttribute("case", input.name)
        try w.setAttribute("seed", provenance.seed)
        try w.setAttribute("model_config", try json(config))
        try w.setAttribute("policy", try json(policy))

        try PromptCaseIO.write(input, to: w)
        for name in Self.inputDatasets(input) { try w.setAttribute("compare", CompareKind.bitwise.rawValue, on: "/inputs/\(name)") }

        try w.createGroup("/llm")
        if let g = llmGridIndices {
            try w.write("/llm/visual_grid_indices", g, shape: [g.count])
            try w.setAttribute("compare", CompareKind.exact.rawValue, on: "/llm/visual_grid_indices")
        }
        func put(_ p: String, _ v: [Float], _ shape: [Int], _ kind: CompareKind) throws {
            try w.write(p, v, shape: shape)
            try w.setAttribute("compare", kind.rawValue, on: p)
        }
        func put(_ p: String, _ v: [Double], _ shape: [Int], _ kind: CompareKind) throws {
            try w.write(p, v, shape: shape)
            try w.setAttribute("compare", kind.rawValue, on: p)
        }
        func put(_ p: String, _ v: [Int], _ shape: [Int], _ kind: CompareKind, type: HDF5StoredType = .int64) throws {
            try w.write(p, v, shape: shape, type: type)
            try w.setAttribute("compare", kind.rawValue, on: p)
        }
        if let rows = hiddenStateRows { try put("/prefill/hidden_state_rows", rows, [rows.count], .exact) }
        try put("/prefill/hidden_states", hiddenStates.flatMap { $0.flatMap { $0 } }, [L + 1, hiddenStates.first?.count ?? 0, d], .float)
        var mask = [Int](repeating: 0, count: L * S)
        // [L, S] for 1-D positions; [L, A, S] for A = 3 (M-RoPE).
        let A = input.positions.axisCount
        var positions = [Int](repeating: -1, count: L * A * S)
        for l in 0..<L {
            for (i, t) in processed[l].enumerated() {
                mask[l * S + t] = 1
                for a in 0..<A { positions[(l * A + a) * S + t] = layerPositions[l].axes[a][i] }
            }
        }
        try put("/prefill/processed", mask, [L, S], .set, type: .uint8)
        try put("/prefill/positions", positions, A == 1 ? [L, S] : [L, A, S], .exact)
        try put("/prefill/decode_positions", decodePositions, [L], .exact)
        try put("/prefill/kv_length", kvLength, [L], .exact)
        try put("/prefill/logits", lastLogits, [lastLogits.count], .float)
        try w.createGroup("/prefill/decisions")
        for (t, dec) in decisions.enumerated() {
            let g = String(format: "/prefill/decisions/%02d", t)
            try w.createGroup(g)
            try w.setAttribute("layer", dec.layer, on: g)
            try w.setAttribute("budget", dec.budget, on: g)
            try put("\(g)/candidates", dec.candidates, [dec.candidates.count], .set)
            try put("\(g)/kept", dec.kept, [dec.kept.count], .set)
            try put("\(g)/deferred", dec.deferred, [dec.deferred.count], .set)
            try put("\(g)/scores", dec.scores, [dec.scores.count], .float)
        }
        try put("/decode/tokens", decodeTokens, [decodeTokens.count], .exact)
        try put("/decode/step_logits", stepLogits.flatMap { $0 }, [stepLogits.count, config.vocabSize], .float)
        try put("/decode/kv_length", kvLengthAfterDecode, [L], .exact)
        try put("/budget/text_tokens", budget.layers.map(\.textTokens), [L], .exact)
        try put("/budget/visual_tokens", budget.layers.map(\.visualTokens), [L], .exact)
        try put("/budget/kv_entries", budget.layers.map(\.kvEntries), [L], .exact)
        try put("/budget/kv_bytes", budget.layers.map(\.kvBytes), [L], .exact)
        try put("/budget/flops", budget.layers.map(\.flops), [L], .exact)
        try put("/budget/flops_fastv_paper", budget.layers.map(\.flopsFastVPaper), [L], .exact)
        try put("/budget/flops_pdrop_paper", budget.layers.map(\.flopsPDropPaper), [L], .exact)
        try w.setAttribute("avg_visual_tokens", budget.averageVisualTokens, on: "/budget")
        try w.setAttribute("image_tokens", budget.imageTokens, on: "/budget")
        try w.setAttribute("llm_visual_tokens", budget.llmVisualTokens, on: "/budget")
        try w.setAttribute("bytes_per_element", budget.bytesPerElement, on: "/budget")
        try w.setAttribute("matching", try json(budget.matching), on: "/budget")
        try w.commit()
    }

    static func inputDatasets(_ c: PromptCase) -> [String] {
        var names = ["prefix_ids", "suffix_ids", "grid", "positions", "decode_steps"]
        switch c.visual {
        case .features: names.append("visual_features")
        case .embeddings: names.append("visual_embeddings")
        }
        if c.visionSide != nil { names += ["vision_side/cls_attention", "vision_side/similarity_features"] }
        if c.visionSide?.clsFeature != nil { names.append("vision_side/cls_feature") }
        return names
    }

    /// Reads and validates a trace: schema name and version, every dataset present with the
    /// shape the config and the sequence imply, no NaN, consistent routes. Errors name the
    /// file and the dataset.
    public static func read(from path: String) throws -> Trace {
        let f = try HDF5File(readingFrom: path)
        func bad(_ object: String, _ why: String) -> InputError { InputError(.badCase, file: path, object: object, why) }
        let schema = try f.stringAttribute("schema")
        guard schema == Self.schema else { throw bad("/@schema", "'\(schema)', expected '\(Self.schema)'") }
        let version = try f.intAttribute("schema_version")
        guard version == Self.schemaVersion else {
            throw bad("/@schema_version", "version \(version); this build reads version \(Self.schemaVersion)")
        }
        let dec = JSONDecoder()
        func decode<T: Decodable>(_ type: T.Type, _ attr: String, of obj: String = "/", text given: String? = nil) throws -> T {
            let text = try given ?? f.stringAttribute(attr, of: obj)
            do { return try dec.decode(T.self, from: Data(text.utf8)) } catch {
                throw bad(obj == "/" ? "/@\(attr)" : "\(obj)@\(attr)", "not a valid \(T.self) JSON: \(error)")
            }
        }
        func mode(_ name: String) throws -> TraceMode {
            guard let m = TraceMode(rawValue: name) else {
                throw bad("/@mode", "'\(name)'; expected \(TraceMode.allCases.map(\.rawValue).joined(separator: " or "))")
            }
            return m
        }
        let config = try decode(ModelConfig.self, "model_config")
        try config.validate(file: path)
        // `/@policy` is RoutingPolicy's own JSON, or a policy file (reroute.policy v1) as
        // `reroute policy show NAME --json` prints it, for producers outside this package.
        let policyText = try f.stringAttribute("policy")
        let policyObject = try? JSONSerialization.jsonObject(with: Data(policyText.utf8)) as? [String: Any]
        let policy = policyObject?["schema"] as? String == PolicyFile.schema
            ? try PolicyFile.decode(Data(policyText.utf8), file: "\(path): /@policy")
            : try decode(RoutingPolicy.self, "policy", text: policyText)
        do { try policy.validate() } catch let e as RoutingError { throw bad("/@policy", "\(e)") }
        let producer = try f.stringAttribute("producer"), producerVersion = try f.stringAttribute("producer_version")
        let producerCommit = try f.stringAttribute("producer_commit"), decoderName = try f.stringAttribute("decoder")
        let modeName = try f.stringAttribute("mode"), model = try f.stringAttribute("model"), seed = try f.intAttribute("seed")
        let provenance = TraceProvenance(producer: producer, producerVersion: producerVersion, producerCommit: producerCommit,
                                         decoder: decoderName, mode: try mode(modeName), model: model, seed: seed,
                                         dtype: f.hasAttribute("dtype") ? try f.stringAttribute("dtype") : nil,
                                         isa: f.hasAttribute("isa") ? try f.stringAttribute("isa") : nil)
        let input = try PromptCaseIO.read(f, name: try f.stringAttribute("case"))
        // The inputs are a case like any other (grid, tokens, positions, NaN/Inf), checked
        // against the trace's own config; the feature width needs the model's projector.
        try input.validate(for: config, projector: nil, file: path, checkProjector: false)
        let L = config.layers, d = config.hiddenSize, V = config.vocabSize

        func floats(_ p: String, _ shape: [Int?]) throws -> [Float] {
            try check(p, try f.shape(p), shape)  // before reading: a declared size never allocates
            let r = try f.readFloats(p)
            if r.values.contains(where: \.isNaN) { throw InputError(.badValue, file: path, object: p, "contains NaN") }
            return r.values
        }
        func doubles(_ p: String, _ shape: [Int?]) throws -> [Double] {
            try check(p, try f.shape(p), shape)  // before reading: a declared size never allocates
            let r = try f.readDoubles(p)
            if r.values.contains(where: \.isNaN) { throw InputError(.badValue, file: path, object: p, "contains NaN") }
            return r.values
        }
        func ints(_ p: String, _ shape: [Int?]) throws -> [Int] {
            try check(p, try f.shape(p), shape)  // before reading: a declared size never allocates
            let r = try f.readInts(p)
            return r.values
        }
        // Every integer is range-checked where it is read (SPEC.md §12): nothing later does
        // arithmetic on, or indexes with, a number the file chose.
        func bounded(_ p: String, _ values: [Int], _ range: ClosedRange<Int>) throws -> [Int] {
            if let v = values.first(where: { !range.contains($0) }) {
                throw InputError(.badValue, file: path, object: p, "\(v) is outside \(range.lowerBound)…\(range.upperBound)")
            }
            return values
        }
        /// Visual-span indices of a decision: each in `span`, none repeated.
        func indices(_ p: String, _ span: ClosedRange<Int>) throws -> [Int] {
            let values = try bounded(p, try ints(p, [nil]), span)
            if Set(values).count != values.count { throw InputError(.badValue, file: path, object: p, "repeats an index") }
            return values
        }
        func check(_ p: String, _ actual: [Int], _ expected: [Int?]) throws {
            guard actual.count == expected.count, zip(actual, expected).allSatisfy({ $1 == nil || $0 == $1 }) else {
                throw InputError(.badShape, file: path, object: p,
                                 "shape \(actual), expected [\(expected.map { $0.map(String.init) ?? "*" }.joined(separator: ", "))]")
            }
        }
        let hiddenShape = try f.shape("/prefill/hidden_states")
        guard hiddenShape.count == 3 else { throw InputError(.badShape, file: path, object: "/prefill/hidden_states", "shape \(hiddenShape), expected [L+1, S, d]") }
        // A compact trace stores some rows only; S' is then the processed mask's width.
        var storedRows: [Int]?
        let S: Int
        if f.exists("/prefill/hidden_state_rows") {
            let maskShape = try f.shape("/prefill/processed")
            guard maskShape.count == 2 else { throw InputError(.badShape, file: path, object: "/prefill/processed", "shape \(maskShape), expected [L, S]") }
            S = maskShape[1]
            let rows = try ints("/prefill/hidden_state_rows", [nil])
            if rows.isEmpty || zip(rows, rows.dropFirst()).contains(where: { $0 >= $1 }) || rows.first! < 0 || rows.last! >= S {
                throw InputError(.badValue, file: path, object: "/prefill/hidden_state_rows",
                                 "must be strictly ascending sequence indices 0…\(S - 1), at least one")
            }
            storedRows = rows
        } else {
            S = hiddenShape[1]
        }
        let R = storedRows?.count ?? S
        let hiddenFlat = try floats("/prefill/hidden_states", [L + 1, R, d])
        let hidden = (0...L).map { l in (0..<R).map { i in Array(hiddenFlat[((l * R + i) * d)..<((l * R + i + 1) * d)]) } }
        let mask = try ints("/prefill/processed", [L, S])
        let A = input.positions.axisCount
        let pos = try ints("/prefill/positions", A == 1 ? [L, S] : [L, A, S])
        var processed: [[Int]] = [], layerPositions: [PositionIDs] = []
        for l in 0..<L {
            let active = (0..<S).filter { mask[l * S + $0] != 0 }
            processed.append(active)
            let axes = (0..<A).map { a in active.map { pos[(l * A + a) * S + $0] } }
            if let bad = axes.joined().first(where: { $0 < 0 || $0 > PromptCase.maxPositionID }) {
                throw InputError(.badValue, file: path, object: "/prefill/positions", "layer \(l): position \(bad) for a processed token")
            }
            layerPositions.append(PositionIDs(axes: axes))
        }
        var llmGrid: [Int]?
        if f.exists("/llm/visual_grid_indices") {
            let cells = try ints("/llm/visual_grid_indices", [nil])
            if let why = PromptCase.gridIndicesProblem(cells, grid: input.grid, hasCLS: input.visionSide?.clsFeature != nil) {
                throw InputError(.badValue, file: path, object: "/llm/visual_grid_indices", why)
            }
            llmGrid = cells
        }
        let llmVisual = llmGrid?.count ?? input.visual.count
        guard S == input.prefixTokens.count + llmVisual + input.suffixTokens.count else {
            throw InputError(.badShape, file: path, object: "/prefill/hidden_states",
                             "\(S) sequence rows, the inputs give \(input.prefixTokens.count + llmVisual + input.suffixTokens.count)")
        }
        // Decision indices are visual-span indices (one per original visual token or grid cell).
        let span = 0...(max(input.visual.count, input.grid.count) - 1)
        var decisions: [RoutingDecision] = []
        for g in try f.children(of: "/prefill/decisions") {
            let p = "/prefill/decisions/\(g)"
            let candidates = try indices("\(p)/candidates", span)
            let scores = try doubles("\(p)/scores", [candidates.count])
            let layer = try f.intAttribute("layer", of: p)
            guard (0..<L).contains(layer) else { throw bad("\(p)@layer", "\(layer) is outside 0 ..< \(L) (a decision layer of this model)") }
            let kept = try indices("\(p)/kept", span), deferred = try indices("\(p)/deferred", span)
            let budget = try bounded("\(p)@budget", [try f.intAttribute("budget", of: p)], 0...span.upperBound + 1)[0]
            decisions.append(RoutingDecision(layer: layer, candidates: candidates, kept: kept, deferred: deferred,
                                             scores: scores, budget: budget))
        }
        let tokens = try bounded("/decode/tokens", try ints("/decode/tokens", [nil]), 0...(V - 1))
        guard tokens.count <= PromptCase.maxDecodeSteps else {
            throw InputError(.badShape, file: path, object: "/decode/tokens", "\(tokens.count) tokens exceed \(PromptCase.maxDecodeSteps) decode steps")
        }
        let step = try floats("/decode/step_logits", [tokens.count, V])
        let maxTokens = S + tokens.count
        let decodePositions = try bounded("/prefill/decode_positions", try ints("/prefill/decode_positions", [L]),
                                          0...(PromptCase.maxPositionID + PromptCase.maxDecodeSteps + 1))
        let kvLength = try bounded("/prefill/kv_length", try ints("/prefill/kv_length", [L]), 0...S)
        let lastLogits = try floats("/prefill/logits", [V])
        let kvAfter = try bounded("/decode/kv_length", try ints("/decode/kv_length", [L]), 0...maxTokens)
        let stepLogits: [[Float]] = (0..<tokens.count).map { Array(step[($0 * V)..<(($0 + 1) * V)]) }
        func trace(_ budget: BudgetReport) -> Trace {
            var t = Trace(provenance: provenance, config: config, policy: policy, input: input, llmGridIndices: llmGrid,
                          hiddenStates: hidden, processed: processed, layerPositions: layerPositions,
                          decodePositions: decodePositions, kvLength: kvLength, lastLogits: lastLogits, decisions: decisions,
                          decodeTokens: tokens, stepLogits: stepLogits, kvLengthAfterDecode: kvAfter, budget: budget)
            t.hiddenStateRows = storedRows
            return t
        }
        guard f.exists("/budget") else {
            // Left to the suite: the budget of what the run processed (SPEC.md §8.13), 16-bit KV.
            let P = input.prefixTokens.count
            let visual = processed.map { $0.filter { (P..<(P + llmVisual)).contains($0) }.count }
            var t = trace(BudgetCalculator.report(config: config, policy: policy.name, matching: policy.budgetMatching,
                                                  textTokens: S - llmVisual, visualTokens: visual, imageTokens: input.grid.count,
                                                  llmVisualTokens: llmVisual, bytesPerElement: 2))
            t.budgetComputed = true
            return t
        }
        let bytesPerElement = try bounded("/budget@bytes_per_element", [try f.intAttribute("bytes_per_element", of: "/budget")], 1...16)[0]
        let budgetLayers = try readBudget(f, L: L, ints: { p, shape in
            // Token and KV-entry counts are at most the sequence; bytes at most entries · 2 · H_kv · d_h · 16.
            let limit = p.hasSuffix("kv_bytes") ? maxTokens * 2 * config.kvWidth * 16 : maxTokens
            return try bounded(p, try ints(p, shape), 0...limit)
        }, doubles: doubles)
        let imageTokens = try bounded("/budget@image_tokens", [try f.intAttribute("image_tokens", of: "/budget")], 0...span.upperBound + 1)[0]
        let llmVisualTokens = try bounded("/budget@llm_visual_tokens", [try f.intAttribute("llm_visual_tokens", of: "/budget")], 0...span.upperBound + 1)[0]
        let matching = try decode(BudgetMatching.self, "matching", of: "/budget")
        let budget = BudgetReport(policy: policy.name, layers: budgetLayers, imageTokens: imageTokens, llmVisualTokens: llmVisualTokens,
                                  matching: matching, bytesPerElement: bytesPerElement)
        return trace(budget)
    }

    private static func readBudget(_ f: HDF5File, L: Int, ints: (String, [Int?]) throws -> [Int],
                                   doubles: (String, [Int?]) throws -> [Double]) throws -> [LayerBudget] {
        let text = try ints("/budget/text_tokens", [L]), visual = try ints("/budget/visual_tokens", [L])
        let entries = try ints("/budget/kv_entries", [L]), bytes = try ints("/budget/kv_bytes", [L])
        let flops = try doubles("/budget/flops", [L]), fastv = try doubles("/budget/flops_fastv_paper", [L])
        let pdrop = try doubles("/budget/flops_pdrop_paper", [L])
        return (0..<L).map { l in
            LayerBudget(layer: l, textTokens: text[l], visualTokens: visual[l], flops: flops[l], flopsFastVPaper: fastv[l],
                        flopsPDropPaper: pdrop[l], kvEntries: entries[l], kvBytes: bytes[l])
        }
    }
}
