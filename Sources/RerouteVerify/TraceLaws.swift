import RerouteModel
import RerouteRouting
import RerouteTrace

/// The laws that one trace can be checked against on its own (SPEC.md §11.2): used on every
/// run of `checkConformance` and by `reroute conform --trace` on traces produced elsewhere.
public enum TraceLaws {
    /// Failures per law (an empty list: the law held), for the laws in `ConformanceLaw.traceLaws`
    /// that apply to the trace's declared policy and `capabilities`.
    ///
    /// - Parameter input: how to name this trace's input in failures (model, seed, case).
    public static func check(_ t: Trace, capabilities: AdapterCapabilities, input: String) -> [ConformanceLaw: [LawFailure]] {
        var out: [ConformanceLaw: [LawFailure]] = [:]
        for law in applicable(to: t.policy, capabilities: capabilities, mode: t.provenance.mode) { out[law] = [] }
        func fail(_ law: ConformanceLaw, _ location: String, expected: String, actual: String) {
            guard out[law] != nil, out[law]!.count < 3 else { return }
            out[law]!.append(LawFailure(input: input, location: location, expected: clip(expected), actual: clip(actual)))
        }
        let layers = t.config.layers
        let s = t.sequenceLength
        let p = t.input.prefixTokens.count, q = t.input.suffixTokens.count
        let n = s - p - q
        let cells = t.llmGridIndices ?? Array(0..<t.input.grid.count)
        guard n >= 0, cells.count == n, t.processed.count == layers, t.layerPositions.count == layers,
              t.kvLength.count == layers, t.hiddenStates.count == layers + 1 else {
            for law in out.keys {
                fail(law, "trace shape", expected: "\(layers) layers and \(cells.count) LLM visual tokens",
                     actual: "\(t.processed.count) layers, \(n) visual tokens")
            }
            return out
        }
        let text = Array(0..<p) + Array((p + n)..<s)
        let cellSet = Set(cells)
        let visualOf: (Int) -> Int? = { i in i >= p && i < p + n ? cells[i - p] : nil }
        let processedVisual = t.processed.map { $0.compactMap(visualOf) }

        // decisions-well-formed, indices-in-grid, no-duplicate-indices, top-k-tie-break
        let gridCount = t.input.grid.count
        for d in t.decisions {
            let at = "decision at layer \(d.layer)"
            func ascending(_ a: [Int]) -> Bool { !zip(a, a.dropFirst()).contains { $0 > $1 } }
            if !ascending(d.candidates) || !ascending(d.kept) || !ascending(d.deferred) {
                fail(.decisionsWellFormed, at, expected: "ascending candidates, kept, deferred",
                     actual: "candidates \(d.candidates), kept \(d.kept), deferred \(d.deferred)")
            }
            for (name, list) in [("candidates", d.candidates), ("kept", d.kept), ("deferred", d.deferred)] {
                if let bad = list.first(where: { $0 < 0 || $0 >= gridCount }) {
                    fail(.indicesInGrid, "\(at), \(name)", expected: "grid cells 0..<\(gridCount) (visual index)", actual: "cell \(bad)")
                } else if let bad = list.first(where: { !cellSet.contains($0) }) {
                    fail(.indicesInGrid, "\(at), \(name)", expected: "cells the LLM received (after the vision-side stage)",
                         actual: "cell \(bad)")
                }
                var seen = Set<Int>()
                if let dup = list.first(where: { !seen.insert($0).inserted }) {
                    fail(.noDuplicateIndices, "\(at), \(name)", expected: "each grid cell once", actual: "cell \(dup) repeated")
                }
            }
            let kept = Set(d.kept), deferred = Set(d.deferred)
            if !kept.isDisjoint(with: deferred) || kept.union(deferred) != Set(d.candidates) {
                fail(.decisionsWellFormed, at, expected: "kept ∪ deferred = candidates, disjoint",
                     actual: "kept \(d.kept), deferred \(d.deferred), candidates \(d.candidates)")
            }
            if d.kept.count != min(d.budget, d.candidates.count) {
                fail(.decisionsWellFormed, at, expected: "|kept| = min(budget \(d.budget), \(d.candidates.count))", actual: "\(d.kept.count)")
            }
            if d.scores.count != d.candidates.count || d.scores.contains(where: { !$0.isFinite }) {
                fail(.decisionsWellFormed, at, expected: "\(d.candidates.count) finite scores",
                     actual: "\(d.scores.count) scores\(d.scores.contains { !$0.isFinite } ? ", some not finite" : "")")
            }
            if out[.topKTieBreak] != nil, d.scores.count == d.candidates.count, !d.scores.contains(where: \.isNaN),
               let top = try? selectTopK(candidates: d.candidates, scores: d.scores, k: d.budget, layer: d.layer), top.kept != d.kept {
                fail(.topKTieBreak, at, expected: "kept \(top.kept)", actual: "kept \(d.kept)")
            }
        }

        // kept-is-processed, deferred-stale: each decision's stage runs from its layer to the next decision's.
        let rowOfCell = Dictionary(cells.enumerated().map { ($1, p + $0) }, uniquingKeysWith: { a, _ in a })
        for (i, d) in t.decisions.enumerated() where d.layer >= 0 && d.layer < layers {
            let end = min(layers, i + 1 < t.decisions.count ? max(d.layer, t.decisions[i + 1].layer) : layers)
            let kept = Set(d.kept)
            for l in d.layer..<end {
                let got = Set(processedVisual[l])
                if got != kept {
                    let missing = kept.subtracting(got).sorted(), extra = got.subtracting(kept).sorted()
                    fail(.keptIsProcessed, "layer \(l) (stage of the decision at layer \(d.layer))",
                         expected: "the kept grid cells processed", actual: "kept but not processed \(missing.prefix(8)); processed but not kept \(extra.prefix(8))")
                    break
                }
            }
            for cell in d.deferred where end > d.layer {
                guard let row = rowOfCell[cell] else { continue }
                // A compact trace checks only the rows it stores.
                guard let entering = t.hiddenState(entering: d.layer, row: row) else { continue }
                for l in (d.layer + 1)...end {
                    guard let now = t.hiddenState(entering: l, row: row) else { break }
                    if let k = zip(entering, now).enumerated().first(where: { $0.element.0.bitPattern != $0.element.1.bitPattern })?.offset {
                        fail(.deferredStale, "/prefill/hidden_states[\(l)] sequence index \(row) (grid cell \(cell))",
                             expected: "element \(k) = \(entering[k]) (its state entering layer \(d.layer))", actual: "\(now[k])")
                        break
                    }
                }
            }
        }

        // text-never-dropped, kv-length
        for l in 0..<layers {
            let active = Set(t.processed[l])
            if let missing = text.first(where: { !active.contains($0) }) {
                fail(.textNeverDropped, "layer \(l)", expected: "text token \(missing) processed", actual: "not processed")
            }
            if t.kvLength[l] != t.processed[l].count {
                fail(.kvLength, "/prefill/kv_length[\(l)]", expected: "\(t.processed[l].count) (tokens processed)", actual: "\(t.kvLength[l])")
            }
        }

        // schedule-executed, budget-declared
        do {
            let schedule = try t.policy.schedule(layers: layers, originalN: t.input.grid.count, llmN: n)
            let executed = t.decisions.map(\.layer), budgets = t.decisions.map(\.budget)
            if executed != schedule.decisionLayers || budgets != schedule.counts {
                fail(.scheduleExecuted, "decisions", expected: "layers \(schedule.decisionLayers) budgets \(schedule.counts)",
                     actual: "layers \(executed) budgets \(budgets)")
            }
            let declared = schedule.visualCounts(n: n, layers: layers)
            for l in 0..<layers where processedVisual[l].count != declared[l] {
                fail(.scheduleExecuted, "layer \(l)", expected: "\(declared[l]) visual tokens", actual: "\(processedVisual[l].count)")
            }
            // The budget is of the visual tokens the LLM received (an adapter's own merge may
            // give fewer than a declared vision-side stage's K1, never more; the merge itself
            // is checked by merges-declared).
            if let k1 = t.policy.visionSideBudget(grid: t.input.grid), n > k1 {
                fail(.budgetDeclared, "/inputs (LLM visual tokens)", expected: "at most \(k1) (the vision-side stage's K1)", actual: "\(n)")
            }
            let report = try BudgetCalculator.report(config: t.config, policy: t.policy, textTokens: p + q, grid: t.input.grid,
                                                     bytesPerElement: t.budget.bytesPerElement, llmVisualTokens: n)
            if report.layers != t.budget.layers || report.llmVisualTokens != t.budget.llmVisualTokens {
                let l = Array(zip(report.layers, t.budget.layers)).firstIndex { $0 != $1 } ?? 0
                fail(.budgetDeclared, "/budget (layer \(l))", expected: describe(report.layers.indices.contains(l) ? report.layers[l] : nil),
                     actual: describe(t.budget.layers.indices.contains(l) ? t.budget.layers[l] : nil))
            }
            let bytesPerEntry = 2 * t.config.kvWidth * t.budget.bytesPerElement
            for (l, b) in report.layers.enumerated() where l < layers {
                let visual = processedVisual[l].count, textCount = t.processed[l].count - visual
                if textCount != b.textTokens || visual != b.visualTokens || t.kvLength[l].multipliedReportingOverflow(by: bytesPerEntry) != (b.kvBytes, false) {
                    fail(.budgetDeclared, "layer \(l)",
                         expected: "\(b.textTokens) text + \(b.visualTokens) visual, \(b.kvBytes) KV bytes",
                         actual: "\(textCount) text + \(visual) visual, \(t.kvLength[l]) KV entries")
                }
            }
        } catch {
            fail(.scheduleExecuted, "policy", expected: "a schedule for \(layers) layers", actual: "\(error)")
        }

        // bypass-identity
        for l in 0..<layers {
            let active = Set(t.processed[l])
            for i in p..<(p + n) where !active.contains(i) {
                guard let before = t.hiddenState(entering: l, row: i), let after = t.hiddenState(entering: l + 1, row: i) else { continue }
                if !zip(before, after).allSatisfy({ $0.bitPattern == $1.bitPattern }) {
                    let k = Array(zip(before, after)).firstIndex { $0.bitPattern != $1.bitPattern } ?? 0
                    fail(.bypassIdentity, "/prefill/hidden_states[\(l + 1)] token \(i) (grid cell \(cells[i - p]))",
                         expected: "element \(k) = \(before[k]) (unchanged)", actual: "\(after[k])")
                }
            }
        }

        // no-readmission
        if out[.noReadmission] != nil {
            for (a, b) in zip(t.decisions, t.decisions.dropFirst()) where !Set(b.candidates).isSubset(of: Set(a.kept)) {
                fail(.noReadmission, "decision at layer \(b.layer)", expected: "candidates ⊆ kept at layer \(a.layer)",
                     actual: "re-admitted \(Array(Set(b.candidates).subtracting(a.kept)).sorted().prefix(8))")
            }
            if let first = t.decisions.first?.layer {
                for l in max(1, first + 1)..<max(max(1, first + 1), layers) where !Set(processedVisual[l]).isSubset(of: Set(processedVisual[l - 1])) {
                    fail(.noReadmission, "layer \(l)", expected: "visual tokens ⊆ layer \(l - 1)'s",
                         actual: "re-admitted \(Array(Set(processedVisual[l]).subtracting(processedVisual[l - 1])).sorted().prefix(8))")
                }
            }
        }

        // positions-declared (prefill and decode), on every position axis
        do {
            let llmPositions = try MergeLayout.of(policy: t.policy, cells: cells).positions(of: t.input, cells: cells)
            let schedule = try? t.policy.schedule(layers: layers, originalN: t.input.grid.count, llmN: n)
            let span = p..<(p + n)
            for l in 0..<layers {
                // Before the first decision every policy runs the case's own positions.
                let rule = schedule?.stage(of: l) != nil ? t.policy.positions : .original
                let (expected, decode) = rule.layout(active: t.processed[l], positions: llmPositions, visualSpan: span, grid: t.input.grid)
                let actual = t.layerPositions[l]
                if actual != expected {
                    let k = (0..<min(expected.count, actual.count)).first { expected.column($0) != actual.column($0) } ?? 0
                    let token = t.processed[l].indices.contains(k) ? t.processed[l][k] : -1
                    fail(.positionsDeclared, "/prefill/positions[\(l)] token \(token)",
                         expected: "\(t.policy.positions.rawValue): \(k < expected.count ? "\(expected.axes.map { $0[k] })" : "none")",
                         actual: k < actual.count ? "\(actual.axes.map { $0[k] })" : "\(actual.count) positions")
                }
                if t.decodePositions.indices.contains(l), t.decodePositions[l] != decode {
                    fail(.positionsDeclared, "/prefill/decode_positions[\(l)]", expected: "\(decode)", actual: "\(t.decodePositions[l])")
                }
            }
        } catch {
            fail(.positionsDeclared, "/inputs/positions", expected: "positions the LLM input's layout defines", actual: "\(error)")
        }

        // no-routing-at-decode
        let fed = max(0, t.input.decodeSteps - 1)
        for l in 0..<min(layers, t.kvLengthAfterDecode.count) where t.kvLengthAfterDecode[l] != t.kvLength[l] + fed {
            fail(.noRoutingAtDecode, "/decode/kv_length[\(l)]", expected: "\(t.kvLength[l]) + \(fed) fed tokens",
                 actual: "\(t.kvLengthAfterDecode[l])")
        }
        return out
    }

    /// Trace laws that apply to a declared policy and capabilities. In a lockstep trace the
    /// routes were forced, so the tie-break law does not apply.
    public static func applicable(to policy: RoutingPolicy, capabilities: AdapterCapabilities, mode: TraceMode) -> [ConformanceLaw] {
        ConformanceLaw.traceLaws.filter { law in
            switch law {
            case .topKTieBreak: capabilities.keepsTopKOfScores && mode == .free
            case .noReadmission: policy.action != .route(monotonic: false)
            default: true
            }
        }
    }

    static func describe(_ b: LayerBudget?) -> String {
        guard let b else { return "no layer" }
        return "\(b.textTokens) text + \(b.visualTokens) visual, \(b.flops) FLOPs, \(b.kvBytes) KV bytes"
    }

    static func clip(_ s: String) -> String { s.count > 240 ? String(s.prefix(240)) + "…" : s }
}
