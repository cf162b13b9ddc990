import Foundation
import RerouteFast
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace
import RerouteVerify

/// What `checkConformance` runs on.
public struct ConformanceOptions: Sendable {
    /// Case seeds; each gives one random case per model (the report names the seed, so a
    /// failure replays with `seeds: [s]`).
    public var seeds: [UInt64]
    public var models: [ConformanceModel]
    /// Adapters a budget-matched variant may name as its base (besides the shipped policies).
    public var bases: [RoutingPolicy]

    public init(seeds: [UInt64] = [1, 2], models: [ConformanceModel] = ConformanceModel.standard, bases: [RoutingPolicy] = []) {
        self.seeds = seeds
        self.models = models
        self.bases = bases
    }
}

/// Checks an adapter against every law of the suite (SPEC.md §11.2) and reports each law's
/// verdict, with the failing input and expected vs actual when one breaks.
public func checkConformance(_ adapter: some PrunerAdapter, options: ConformanceOptions = ConformanceOptions()) -> ConformanceReport {
    var run = ConformanceRun(adapter: adapter, options: options)
    run.checkWaivers()
    run.checkStatic()
    for model in options.models { run.check(model: model) }
    run.checkLateRerun()
    return run.report()
}

/// Checks one trace produced elsewhere against the laws a trace alone can show
/// (`reroute conform --trace`), with the capabilities of the trace's policy unless given (top-k
/// of scores, or a selection rule's).
public func checkConformance(trace: Trace, name: String, capabilities: AdapterCapabilities? = nil) -> ConformanceReport {
    let caps = capabilities ?? trace.policy.capabilities
    let input = "\(name) (model \(trace.provenance.model), case \(trace.input.name), decoder \(trace.provenance.decoder))"
    let found = TraceLaws.check(trace, capabilities: caps, input: input)
    let results = ConformanceLaw.traceLaws.map { law -> LawResult in
        if let w = caps.waivers.first(where: { $0.law == law.rawValue }) {
            return LawResult(law: law, statement: law.statement, status: .waived, checks: 0, failures: [], note: w.reason)
        }
        guard let f = found[law] else {
            return LawResult(law: law, statement: law.statement, status: .notApplicable, checks: 0, failures: [],
                             note: "not applicable to this policy's declared action or mode")
        }
        return LawResult(law: law, statement: law.statement, status: f.isEmpty ? .passed : .failed, checks: 1, failures: f, note: nil)
    }
    return ConformanceReport(adapter: "\(trace.policy.name) (\(name))", results: results)
}

/// The bookkeeping of one `checkConformance` call.
struct ConformanceRun<A: PrunerAdapter> {
    let adapter: A
    let options: ConformanceOptions
    var checks: [ConformanceLaw: Int] = [:]
    var failures: [ConformanceLaw: [LawFailure]] = [:]
    var notes: [ConformanceLaw: String] = [:]
    let maxFailures = 3
    /// The first base run, re-run after every other run (state kept between runs shows up).
    var firstRun: (model: ConformanceModel, seed: UInt64, trace: Trace)?

    init(adapter: A, options: ConformanceOptions) {
        self.adapter = adapter
        self.options = options
    }

    var caps: AdapterCapabilities { adapter.capabilities }
    var policy: RoutingPolicy { adapter.policy }

    /// The waiver of a law, if it is valid (names the law and gives a reason).
    func waiver(_ law: ConformanceLaw) -> Waiver? {
        caps.waivers.first { $0.law == law.rawValue && !$0.reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
    }

    func waived(_ law: ConformanceLaw) -> Bool { waiver(law) != nil }

    mutating func record(_ law: ConformanceLaw, _ failure: LawFailure?) {
        guard !waived(law) else { return }
        checks[law, default: 0] += 1
        if let failure, failures[law, default: []].count < maxFailures { failures[law, default: []].append(failure) }
    }

    mutating func absorb(_ found: [ConformanceLaw: [LawFailure]], into target: ConformanceLaw? = nil) {
        for (law, list) in found {
            let l = target ?? law
            if list.isEmpty { record(l, nil) } else { for f in list { record(l, f) } }
        }
    }

    /// A run that threw: an invalid selection breaks well-formedness (an invalid merge before
    /// the LLM, merges-declared), anything else the law at hand.
    mutating func threw(_ error: Error, law: ConformanceLaw, input: String) {
        let target: ConformanceLaw
        if case RoutingError.badSelection(_, let layer, _) = error { target = layer < 0 ? .mergesDeclared : .decisionsWellFormed } else { target = law }
        record(target, LawFailure(input: input, location: "run", expected: "the run completes", actual: "threw: \(error)"))
    }

    /// A waiver must name a law and give a reason; otherwise it is itself a failure (of
    /// `determinism`, which cannot be waived silently this way either).
    mutating func checkWaivers() {
        for w in caps.waivers {
            let known = ConformanceLaw(rawValue: w.law) != nil
            if !known || w.reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                let law: ConformanceLaw = known ? ConformanceLaw(rawValue: w.law)! : .determinism
                checks[law, default: 0] += 1
                failures[law, default: []].append(LawFailure(
                    input: "the adapter's capabilities", location: "waiver '\(w.law)'",
                    expected: "a known law (\(ConformanceLaw.allCases.map(\.rawValue).joined(separator: ", "))) and a reason",
                    actual: known ? "an empty reason" : "unknown law"))
            }
        }
    }

    /// Runs the first case again after everything else: an adapter that keeps state between
    /// calls (a cache, a counter) answers differently now.
    mutating func checkLateRerun() {
        guard let (m, seed, first) = firstRun else { return }
        let c = ConformanceCases.random(for: m, seed: seed, video: policy.selection == .evs)
        do {
            let again = try TraceRecorder.record(decoder: ReferenceDecoder(weights: m.weights()), model: m.name, case: c, adapter: adapter,
                                                 seed: Int(truncatingIfNeeded: seed))
            record(.determinism, bitwiseDifference(first, again).map {
                LawFailure(input: "model \(m.name), seed \(seed), case \(c.name), reference, re-run after all other runs",
                           location: $0.object, expected: $0.expected, actual: $0.actual)
            })
        } catch { threw(error, law: .determinism, input: "model \(m.name), seed \(seed), late re-run") }
    }

    // MARK: Static laws (declared budgets on LLaVA-1.5-7B's shape)

    static var llavaShape: ModelConfig {
        ModelConfig(family: .llama, hiddenSize: 4096, layers: 32, heads: 32, kvHeads: 32, intermediateSize: 11008, rmsNormEps: 1e-5,
                    ropeTheta: 10_000, vocabSize: 32064, tieWordEmbeddings: false)
    }

    mutating func checkStatic() {
        let input = "LLaVA-1.5-7B shape (32 layers, 24x24 grid, 36 text tokens)"
        let grid = ImageGrid(rows: 24, cols: 24)
        func avg(_ p: RoutingPolicy) throws -> (Double, [Int]) {
            let r = try BudgetCalculator.report(config: Self.llavaShape, policy: p, textTokens: 36, grid: grid)
            return (r.averageVisualTokens, r.layers.map(\.visualTokens))
        }
        do {
            let (mine, counts) = try avg(policy)
            if let tier = caps.tier {
                let t = Double(tier.rawValue)
                record(.tierDeclared, abs(mine - t) <= 0.01 * t ? nil
                       : LawFailure(input: input, location: "avg_T", expected: "\(tier.rawValue) ± 1%", actual: String(format: "%.2f", mine)))
            } else {
                notes[.tierDeclared] = "no tier declared"
            }
            let baseName: String?
            switch policy.budgetMatching {
            case .none: baseName = nil
            case .perLayer(let b), .averageTokens(let b): baseName = b
            }
            if let baseName {
                if let base = (options.bases + PolicyCatalog.all).first(where: { $0.name == baseName }) {
                    let (theirs, theirCounts) = try avg(base)
                    switch policy.budgetMatching {
                    case .perLayer:
                        record(.budgetMatching, counts == theirCounts ? nil
                               : LawFailure(input: input, location: "visual tokens per layer", expected: "\(baseName): \(theirCounts)",
                                            actual: "\(counts)"))
                    default:
                        record(.budgetMatching, abs(mine - theirs) <= 0.01 * theirs ? nil
                               : LawFailure(input: input, location: "avg_T", expected: String(format: "%@: %.2f ± 1%%", baseName, theirs),
                                            actual: String(format: "%.2f", mine)))
                    }
                } else {
                    record(.budgetMatching, LawFailure(input: input, location: "budget matching", expected: "a known base policy",
                                                       actual: "'\(baseName)' is not a shipped policy nor in options.bases"))
                }
            } else {
                notes[.budgetMatching] = "no base declared"
            }
        } catch {
            record(.tierDeclared, LawFailure(input: input, location: "budget", expected: "a budget", actual: "\(error)"))
        }
    }

    // MARK: Runs

    mutating func check(model m: ConformanceModel) {
        // Re-indexing and contiguous merges are defined for 1-D positions only (SPEC.md §8.6, §8.16); such policies refuse M-RoPE cases.
        if m.config.mropeSection != nil, policy.requiresOneDimensionalPositions { return }
        // The recomputed M-RoPE rules are defined for 3-D positions only.
        if m.config.mropeSection == nil, policy.positions.requiresMultimodal { return }
        let weights = m.weights()
        let reference = ReferenceDecoder(weights: weights)
        let fast = FastDecoder(weights: weights)
        for seed in options.seeds {
            let c = ConformanceCases.random(for: m, seed: seed, video: policy.selection == .evs)
            let input = "model \(m.name), seed \(seed), case \(c.name)"
            func trace<D: TraceableDecoder>(_ d: D, _ a: A, _ c: PromptCase, forced: [Int: [Int]] = [:]) throws -> Trace {
                try TraceRecorder.record(decoder: d, model: m.name, case: c, adapter: a, seed: Int(truncatingIfNeeded: seed), forcedKept: forced)
            }
            // Base runs: determinism, trace laws on both decoders, decoders agree.
            let ref: Trace, fst: Trace
            do {
                ref = try trace(reference, adapter, c)
                let again = try trace(reference, adapter, c)
                record(.determinism, bitwiseDifference(ref, again).map {
                    LawFailure(input: input + ", reference", location: $0.object, expected: $0.expected, actual: $0.actual)
                })
                fst = try trace(fast, adapter, c)
                let fastAgain = try trace(fast, adapter, c)
                record(.determinism, bitwiseDifference(fst, fastAgain).map {
                    LawFailure(input: input + ", fast", location: $0.object, expected: $0.expected, actual: $0.actual)
                })
            } catch {
                threw(error, law: .determinism, input: input)
                continue
            }
            if firstRun == nil { firstRun = (m, seed, ref) }
            checkMerges(c, ref, reference, input: input)
            absorb(TraceLaws.check(ref, capabilities: caps, input: input + ", reference"))
            absorb(TraceLaws.check(fst, capabilities: caps, input: input + ", fast"))
            let subject = adapter
            checkAgreement(ref: ref, fast: fst, input: input) { forced in try trace(fast, subject, c, forced: forced) }

            // Ratio 1 equals the run without decisions (same vision-side stage).
            do {
                let all = policy.withEveryKeepRatio(1)
                var none = policy
                none.decisionLayers = []
                none.keepRatios = []
                none.keepCounts = nil
                none.budgetMatching = .none
                let withAll = adapter.with(policy: all), withNone = adapter.with(policy: none)
                if withAll.policy != all || withNone.policy != none {
                    record(.ratioOneIsDense, LawFailure(input: input, location: "with(policy:)", expected: "an adapter declaring the given policy",
                                                        actual: "declares '\(withAll.policy.name)' with ratios \(withAll.policy.keepRatios)"))
                } else {
                    let a = try trace(reference, withAll, c)
                    let b = try trace(reference, withNone, c)
                    record(.ratioOneIsDense, bitwiseDifference(b, a, routesToo: false).map {
                        LawFailure(input: input, location: $0.object, expected: "as without decisions: \($0.expected)", actual: $0.actual)
                    })
                }
            } catch { threw(error, law: .ratioOneIsDense, input: input) }

            // Position offset: RoPE sees only differences.
            do {
                let shiftedCase = ConformanceCases.shifted(c, by: 7)
                var shifted = try trace(reference, adapter, shiftedCase)
                absorb(TraceLaws.check(shifted, capabilities: caps, input: input + ", positions + 7"))
                if offsetTie(ref, shifted) {
                    // A tie within 1e-9 flipped: replay with the first run's routes and compare the rest.
                    let forced = Dictionary(uniqueKeysWithValues: ref.decisions.map { ($0.layer, $0.kept) })
                    shifted = try trace(reference, adapter, shiftedCase, forced: forced)
                }
                record(.positionOffsetInvariance, offsetDifference(ref, shifted, offset: 7).map {
                    LawFailure(input: input + ", positions + 7", location: $0.object, expected: $0.expected, actual: $0.actual)
                })
            } catch { threw(error, law: .positionOffsetInvariance, input: input + ", positions + 7") }

            // More text before the image.
            do {
                let longer = try trace(reference, adapter, ConformanceCases.longerPrefix(c, extra: 3, vocab: m.config.vocabSize, seed: seed))
                absorb(TraceLaws.check(longer, capabilities: caps, input: input + ", 3 more prefix tokens"))
                record(.prefixLengthInvariance, structureDifference(ref, longer, extraText: 3).map {
                    LawFailure(input: input + ", 3 more prefix tokens", location: $0.object, expected: $0.expected, actual: $0.actual)
                })
            } catch { threw(error, law: .prefixLengthInvariance, input: input + ", 3 more prefix tokens") }

            checkDegenerate(model: m, weights: weights, reference: reference, fast: fast, seed: seed)
        }
    }

    mutating func checkAgreement(ref: Trace, fast: Trace, input: String, replay: @escaping ([Int: [Int]]) throws -> Trace) {
        let rules = ComparisonRules.fastVsReference(ref.config)
        // A flip is accepted only if the scores decide kept (top-k adapters); then it is replayed.
        let verdict: Verdict
        do {
            verdict = try judge(expected: ref, actual: fast, rules: rules, expectedName: "reference", actualName: "fast",
                                replay: caps.keepsTopKOfScores ? replay : nil)
        } catch { threw(error, law: .decodersAgree, input: input); return }
        var first = verdict.failures.first
        if first == nil, !caps.keepsTopKOfScores, let flip = verdict.acceptedRoutes.first {
            first = flip  // without top-k of its scores, an adapter's route flip is no tie
        }
        record(.decodersAgree, first.map {
            let expected = switch $0.kind {
            case .float: "within the \(rules.tensors.name) tolerance"
            case .set: "the same set (or a tie flip within ε = \(rules.tieEpsilon) of the largest score)"
            default: "equal"
            }
            return LawFailure(input: input, location: $0.object, expected: expected, actual: $0.summary)
        })
    }

    mutating func checkDegenerate(model m: ConformanceModel, weights: ModelWeights, reference: ReferenceDecoder, fast: FastDecoder,
                                  seed: UInt64) {
        func trace(_ a: A, _ c: PromptCase, decoder: ReferenceDecoder? = nil) throws -> Trace {
            try TraceRecorder.record(decoder: decoder ?? reference, model: m.name, case: c, adapter: a, seed: Int(truncatingIfNeeded: seed))
        }
        // One visual token.
        let one = ConformanceCases.random(for: m, seed: seed, grid: ImageGrid(rows: 1, cols: 1))
        let oneInput = "model \(m.name), seed \(seed), case \(one.name)"
        do {
            absorb(TraceLaws.check(try trace(adapter, one), capabilities: caps, input: oneInput), into: .oneVisualToken)
        } catch { threw(error, law: .oneVisualToken, input: oneInput) }

        // Ratios 0 and 1.
        let c = ConformanceCases.random(for: m, seed: seed, video: policy.selection == .evs)
        for ratio in [0.0, 1.0] where !policy.isDense {
            var p = policy.withEveryKeepRatio(ratio)
            if ratio == 0 { p.countRule = .floor }  // so that the budget really is 0 (max(1, ·) would keep one)
            let input = "model \(m.name), seed \(seed), case \(c.name), every keep ratio \(ratio)\(ratio == 0 ? " (count rule floor)" : "")"
            do {
                let t = try trace(adapter.with(policy: p), c)
                absorb(TraceLaws.check(t, capabilities: caps, input: input), into: .budgetZeroAndFull)
                let n = t.sequenceLength - c.prefixTokens.count - c.suffixTokens.count
                let expected = ratio == 1 ? n : p.countRule.count(of: c.grid.count, ratio: 0)
                if let first = t.decisions.first?.layer {
                    let visual = t.processed[first].count - (t.sequenceLength - n)
                    record(.budgetZeroAndFull, visual == min(expected, n) ? nil
                           : LawFailure(input: input, location: "layer \(first)", expected: "\(min(expected, n)) visual tokens",
                                        actual: "\(visual)"))
                }
            } catch { threw(error, law: .budgetZeroAndFull, input: input) }
        }

        // All scores equal: uniform attention keeps the first k by index.
        guard caps.scoresAreAttention, caps.keepsTopKOfScores, !policy.isDense else { return }
        let uniform = ReferenceDecoder(weights: ConformanceCases.uniformAttention(weights))
        let input = "model \(m.name) with zero query projections, seed \(seed), case \(c.name)"
        do {
            let t = try trace(adapter, c, decoder: uniform)
            absorb(TraceLaws.check(t, capabilities: caps, input: input))
            for d in t.decisions {
                let spread = (d.scores.max() ?? 0) - (d.scores.min() ?? 0)
                let expected = Array(d.candidates.prefix(d.budget))
                record(.equalScores, d.kept == expected ? nil
                       : LawFailure(input: input, location: "decision at layer \(d.layer) (score spread \(spread))",
                                    expected: "kept \(expected.prefix(16))", actual: "kept \(d.kept.prefix(16))"))
            }
        } catch { threw(error, law: .equalScores, input: input) }
    }

    /// merges-declared: the plan is well formed and is what the LLM received (the reference
    /// decoder's embedded input of the declared case, bit for bit, and the cells' positions).
    mutating func checkMerges(_ c: PromptCase, _ t: Trace, _ reference: ReferenceDecoder, input: String) {
        do {
            let budget = adapter.mergeBudget(grid: c.grid)
            guard let plan = try adapter.mergeBeforeLLM(MergeInput(visual: c.visual, grid: c.grid, visionSide: c.visionSide, budget: budget))
            else { return }
            func fail(_ at: String, _ expected: String, _ actual: String) {
                record(.mergesDeclared, LawFailure(input: input, location: at, expected: expected, actual: actual))
            }
            if let problem = plan.problem(grid: c.grid, budget: budget, cls: c.visionSide?.clsFeature != nil) {
                return fail("merge before the LLM", "a well-formed plan", problem)
            }
            guard (t.llmGridIndices ?? Array(0..<c.grid.count)) == plan.cells else {
                return fail("/llm/visual_grid_indices", "the placement cells \(plan.cells.prefix(12))", "\(t.llmGridIndices?.prefix(12).description ?? "every cell")")
            }
            let declared = try plan.apply(to: c)
            let p = c.prefixTokens.count, rows = (0..<plan.tokens.count).map { p + $0 }
            let embedded = reference.hiddenStates(entering: 0, rows: rows, state: try reference.begin(declared, kvCapacity: nil))
            for (i, row) in rows.enumerated() where embedded[i].map(Float.init) != t.hiddenStates[0][row] {
                return fail("/prefill/hidden_states[0] token at cell \(plan.cells[i])", "the declared combination of \(plan.tokens[i].sources.count) cells",
                            "another vector")
            }
            let column = Dictionary(uniqueKeysWithValues: t.processed[0].enumerated().map { ($1, $0) })
            for (i, row) in rows.enumerated() {
                guard let k = column[row] else { continue }  // not processed by layer 0 (a decision there)
                let got = t.layerPositions[0].axes.map { $0[k] }, want = declared.positions.axes.map { $0[row] }
                if t.policy.decisionLayers.first != 0, got != want {
                    return fail("/prefill/positions[0] token at cell \(plan.cells[i])", "\(want)", "\(got)")
                }
            }
            record(.mergesDeclared, nil)
        } catch { threw(error, law: .mergesDeclared, input: input) }
    }

    // MARK: Report

    func report() -> ConformanceReport {
        let results = ConformanceLaw.allCases.map { law -> LawResult in
            if let w = waiver(law) {
                return LawResult(law: law, statement: law.statement, status: .waived, checks: 0, failures: [], note: w.reason)
            }
            let n = checks[law] ?? 0
            if n == 0 {
                return LawResult(law: law, statement: law.statement, status: .notApplicable, checks: 0, failures: [],
                                 note: notes[law] ?? notApplicableReason(law))
            }
            let f = failures[law] ?? []
            return LawResult(law: law, statement: law.statement, status: f.isEmpty ? .passed : .failed, checks: n, failures: f, note: nil)
        }
        return ConformanceReport(adapter: policy.name, results: results)
    }

    func notApplicableReason(_ law: ConformanceLaw) -> String {
        switch law {
        case .noReadmission: "non-monotonic routing re-admits by design"
        case .equalScores: caps.scoresAreAttention ? "no decisions" : "the adapter's scores are not the attention scorer's"
        case .topKTieBreak: "the adapter does not claim top-k of its scores"
        case .mergesDeclared: "the adapter merges nothing before the LLM"
        default: "nothing to check for this adapter"
        }
    }
}

/// Where two traces first differ.
struct TraceDifference {
    var object: String
    var expected: String
    var actual: String
}

/// The first bitwise difference of two runs (routes, scores, processed sets, positions,
/// KV lengths, hidden states, logits, tokens), or nil.
func bitwiseDifference(_ a: Trace, _ b: Trace, routesToo: Bool = true) -> TraceDifference? {
    func bits(_ x: [Float]) -> [UInt32] { x.map(\.bitPattern) }
    if routesToo {
        if a.decisions.count != b.decisions.count {
            return TraceDifference(object: "/prefill/decisions", expected: "\(a.decisions.count) decisions", actual: "\(b.decisions.count)")
        }
        for (x, y) in zip(a.decisions, b.decisions) where x.kept != y.kept || x.scores.map(\.bitPattern) != y.scores.map(\.bitPattern) {
            return TraceDifference(object: "decision at layer \(x.layer)", expected: "kept \(x.kept.prefix(12)), scores \(x.scores.prefix(4))",
                                   actual: "kept \(y.kept.prefix(12)), scores \(y.scores.prefix(4))")
        }
    }
    for l in a.processed.indices where a.processed[l] != b.processed[l] || a.layerPositions[l] != b.layerPositions[l] {
        return TraceDifference(object: "/prefill/processed[\(l)]", expected: "\(a.processed[l].count) tokens", actual: "\(b.processed[l].count) tokens")
    }
    if a.kvLength != b.kvLength { return TraceDifference(object: "/prefill/kv_length", expected: "\(a.kvLength)", actual: "\(b.kvLength)") }
    for l in a.hiddenStates.indices {
        for i in a.hiddenStates[l].indices where bits(a.hiddenStates[l][i]) != bits(b.hiddenStates[l][i]) {
            let k = Array(zip(a.hiddenStates[l][i], b.hiddenStates[l][i])).firstIndex { $0.bitPattern != $1.bitPattern } ?? 0
            return TraceDifference(object: "/prefill/hidden_states[\(l)] token \(i)", expected: "\(a.hiddenStates[l][i][k])",
                                   actual: "\(b.hiddenStates[l][i][k])")
        }
    }
    if bits(a.lastLogits) != bits(b.lastLogits) { return TraceDifference(object: "/prefill/logits", expected: "bitwise equal", actual: "differs") }
    if a.decodeTokens != b.decodeTokens {
        return TraceDifference(object: "/decode/tokens", expected: "\(a.decodeTokens)", actual: "\(b.decodeTokens)")
    }
    for (s, (x, y)) in zip(a.stepLogits, b.stepLogits).enumerated() where bits(x) != bits(y) {
        return TraceDifference(object: "/decode/step_logits[\(s)]", expected: "bitwise equal", actual: "differs")
    }
    return nil
}

/// Whether the runs' routes differ only by ties within 1e-9 of the largest score (`RouteRule`).
func offsetTie(_ a: Trace, _ b: Trace) -> Bool {
    var rules = ComparisonRules.reference
    rules.tieEpsilon = 1e-9
    return RouteRule.onlyAcceptedFlips(a.decisions, b.decisions, rules: rules)
}

/// Position-offset invariance (b's positions are a's + `offset`): the same decisions, processed
/// sets, KV lengths and greedy tokens; positions shifted by the offset (or equal where
/// re-indexed); hidden states, logits and step logits within 1e-6 of each row's scale (both
/// runs are the float64 reference, stored in float32).
func offsetDifference(_ a: Trace, _ b: Trace, offset: Int) -> TraceDifference? {
    if a.decisions.map(\.layer) != b.decisions.map(\.layer) {
        return TraceDifference(object: "decisions", expected: "layers \(a.decisions.map(\.layer))", actual: "layers \(b.decisions.map(\.layer))")
    }
    for (x, y) in zip(a.decisions, b.decisions) where x.kept != y.kept {
        return TraceDifference(object: "decision at layer \(x.layer)", expected: "kept \(x.kept.prefix(12))", actual: "kept \(y.kept.prefix(12))")
    }
    for l in a.processed.indices {
        if a.processed[l] != b.processed[l] {
            return TraceDifference(object: "/prefill/processed[\(l)]", expected: "\(a.processed[l].count) tokens", actual: "\(b.processed[l].count)")
        }
        let shifted = PositionIDs(axes: a.layerPositions[l].axes.map { $0.map { $0 + offset } })
        if b.layerPositions[l] != shifted && b.layerPositions[l] != a.layerPositions[l] {
            return TraceDifference(object: "/prefill/positions[\(l)]", expected: "the first run's + \(offset) (or equal, re-indexed)",
                                   actual: "\(b.layerPositions[l].axes.map { $0.prefix(6) })")
        }
    }
    if a.kvLength != b.kvLength || a.kvLengthAfterDecode != b.kvLengthAfterDecode {
        return TraceDifference(object: "/prefill/kv_length", expected: "\(a.kvLength)", actual: "\(b.kvLength)")
    }
    func close(_ x: [Float], _ y: [Float]) -> Bool {
        let scale = Double(x.map(abs).max() ?? 0)
        return x.count == y.count && zip(x, y).allSatisfy { abs(Double($0) - Double($1)) <= 1e-6 * scale }
    }
    for l in a.hiddenStates.indices {
        for i in a.hiddenStates[l].indices where !close(a.hiddenStates[l][i], b.hiddenStates[l][i]) {
            return TraceDifference(object: "/prefill/hidden_states[\(l)] token \(i)", expected: "\(a.hiddenStates[l][i].prefix(3))",
                                   actual: "\(b.hiddenStates[l][i].prefix(3))")
        }
    }
    if !close(a.lastLogits, b.lastLogits) { return TraceDifference(object: "/prefill/logits", expected: "within 1e-6 of the row scale", actual: "differs") }
    if a.decodeTokens != b.decodeTokens {
        return TraceDifference(object: "/decode/tokens", expected: "\(a.decodeTokens)", actual: "\(b.decodeTokens)")
    }
    for (s, (x, y)) in zip(a.stepLogits, b.stepLogits).enumerated() where !close(x, y) {
        return TraceDifference(object: "/decode/step_logits[\(s)]", expected: "within 1e-6 of the row scale", actual: "differs")
    }
    return nil
}

/// Prefix-length invariance: the routing structure is unchanged; KV lengths grow by the added text.
func structureDifference(_ a: Trace, _ b: Trace, extraText: Int) -> TraceDifference? {
    let shape = { (t: Trace) in t.decisions.map { "layer \($0.layer): budget \($0.budget), \($0.candidates.count) candidates" } }
    if shape(a) != shape(b) { return TraceDifference(object: "decisions", expected: "\(shape(a))", actual: "\(shape(b))") }
    let kv = a.kvLength.map { $0 + extraText }
    if kv != b.kvLength { return TraceDifference(object: "/prefill/kv_length", expected: "\(kv)", actual: "\(b.kvLength)") }
    if a.kvLengthAfterDecode.map({ $0 + extraText }) != b.kvLengthAfterDecode {
        return TraceDifference(object: "/decode/kv_length", expected: "\(a.kvLengthAfterDecode.map { $0 + extraText })", actual: "\(b.kvLengthAfterDecode)")
    }
    return nil
}
