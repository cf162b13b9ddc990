import DARTStyleAdapter
import Foundation
import MergingAdapter
import RerouteConformance
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace
import RerouteVerify
import Testing

/// Adapters that break one rule each: the suite must catch them (so it can fail).
enum BrokenAdapters {
    /// Unseeded randomness: breaks determinism.
    struct Unseeded: PrunerAdapter {
        var policy: RoutingPolicy = .fastVRelease(tier: .t192)
        var capabilities: AdapterCapabilities { AdapterCapabilities(keepsTopKOfScores: true, scoresAreAttention: false) }
        func with(policy: RoutingPolicy) -> Self { Self(policy: policy) }
        func select(_ input: SelectionInput) throws -> Selection {
            try Selection.topK(input, scores: input.candidates.map { _ in Double.random(in: 0..<1) })
        }
    }

    /// Keeps one token more than its budget: an invalid selection.
    struct OverBudget: PrunerAdapter {
        var policy: RoutingPolicy = .fastVRelease(tier: .t192)
        var capabilities: AdapterCapabilities { AdapterCapabilities(keepsTopKOfScores: true, scoresAreAttention: true) }
        func with(policy: RoutingPolicy) -> Self { Self(policy: policy) }
        func select(_ input: SelectionInput) throws -> Selection {
            let scores = try input.attentionScores()
            let k = min(input.candidates.count, input.budget + 1)
            return Selection(kept: try selectTopK(candidates: input.candidates, scores: scores, k: k, layer: input.layer).kept, scores: scores)
        }
    }

    /// A merge before the LLM that breaks the merge laws in one way each: a negative weight,
    /// more tokens than its budget, a source outside the grid.
    struct BadMerge: PrunerAdapter {
        enum Flaw { case negativeWeight, overBudget, sourceOutsideGrid }
        var flaw: Flaw
        var policy: RoutingPolicy = .fastVRelease(tier: .t192)
        var capabilities: AdapterCapabilities { AdapterCapabilities(keepsTopKOfScores: true, scoresAreAttention: true) }
        func with(policy: RoutingPolicy) -> Self { Self(flaw: flaw, policy: policy) }
        func mergeBudget(grid: ImageGrid) -> Int { grid.count - 1 }
        func mergeBeforeLLM(_ input: MergeInput) throws -> MergePlan? {
            let n = input.grid.count
            switch flaw {
            case .negativeWeight: return MergePlan(tokens: [MergedToken(cell: 0, sources: [0, 1], weights: [1, -0.5])] + (2..<n).map { .kept($0) })
            case .overBudget: return MergePlan(tokens: (0..<n).map { .kept($0) })
            case .sourceOutsideGrid: return MergePlan(tokens: [MergedToken(cell: 0, sources: [0, n + 1], weights: [0.5, 0.5])])  // n is the CLS cell
            }
        }
        func select(_ input: SelectionInput) throws -> Selection { try policy.select(input) }
    }

    /// Nüwa's stage 1 with its last merged token left out: fewer LLM visual tokens than the
    /// declared stage's K1, which is within its budget and must not fail the budget law.
    struct SmallerThanStage: PrunerAdapter {
        var policy: RoutingPolicy = .nuwa(tier: .t192)
        var capabilities: AdapterCapabilities { policy.capabilities }
        func with(policy: RoutingPolicy) -> Self { Self(policy: policy) }
        func mergeBeforeLLM(_ input: MergeInput) throws -> MergePlan? {
            guard case .features(let x) = input.visual, let side = input.visionSide, let stage = policy.visionStage else { return nil }
            var plan = try stage.mergePlan(features: x, inputs: side, grid: input.grid)
            plan.tokens.removeLast()
            return plan
        }
        func select(_ input: SelectionInput) throws -> Selection { try policy.select(input) }
    }

    /// `with(policy:)` ignores its argument: the ratio-1 law would compare the adapter with itself.
    struct IgnoresPolicyChanges: PrunerAdapter {
        var policy: RoutingPolicy = .fastVRelease(tier: .t64)
        var capabilities: AdapterCapabilities { AdapterCapabilities(keepsTopKOfScores: true, scoresAreAttention: true) }
        func with(policy: RoutingPolicy) -> Self { self }
        func select(_ input: SelectionInput) throws -> Selection { try policy.select(input) }
    }

    /// Top-k with ties broken towards the higher index (as `torch.topk` may): breaks the tie-break laws.
    struct HighIndexTies: PrunerAdapter {
        var policy: RoutingPolicy = .fastVRelease(tier: .t192)
        var capabilities: AdapterCapabilities { AdapterCapabilities(keepsTopKOfScores: true, scoresAreAttention: true) }
        func with(policy: RoutingPolicy) -> Self { Self(policy: policy) }
        func select(_ input: SelectionInput) throws -> Selection {
            let scores = try input.attentionScores()
            let order = input.candidates.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 > $1 }
            return Selection(kept: order.prefix(input.keepCount).map { input.candidates[$0] }.sorted(), scores: scores)
        }
    }
}

@Suite struct ConformanceTests {
    static let quick = ConformanceOptions(seeds: [1])

    func law(_ r: ConformanceReport, _ l: ConformanceLaw) -> LawResult { r.results.first { $0.law == l }! }

    /// One policy of each kind: official FastV, re-indexed PDrop, Reroute routing, Nüwa's stage,
    /// and one with waivers. (`reroute conform --all` in CI covers every shipped policy.)
    @Test(arguments: ["fastv", "pdrop", "reroute-fastv-64", "nuwa-64", "reroute-pdrop-64"])
    func shippedPolicyPasses(_ name: String) throws {
        let adapter = try #require(ConformanceCatalog.named(name))
        let r = checkConformance(adapter, options: Self.quick)
        #expect(r.passed, "\(r.rendered())")
        #expect(law(r, .determinism).status == .passed)
        #expect(law(r, .decodersAgree).status == .passed)
        #expect(law(r, .bypassIdentity).checks > 0)
    }

    @Test func catalogCoversEveryShippedPolicy() {
        #expect(ConformanceCatalog.all.map(\.policy.name).sorted() == PolicyCatalog.names.sorted())
    }

    @Test func lawsApplyByDeclaredAction() throws {
        let route = checkConformance(try #require(ConformanceCatalog.named("reroute-fastv-64")), options: Self.quick)
        #expect(law(route, .noReadmission).status == .notApplicable)
        let delete = checkConformance(try #require(ConformanceCatalog.named("fastv-release-64")), options: Self.quick)
        #expect(law(delete, .noReadmission).status == .passed)
    }

    @Test func waiversAreExplicitWithReasons() throws {
        let r = checkConformance(try #require(ConformanceCatalog.named("pdrop-release-64")), options: Self.quick)
        let tier = law(r, .tierDeclared)
        #expect(tier.status == .waived)
        #expect(tier.note?.contains("80.4") == true)
        // Without the waiver the same adapter fails the tier law, with the measured avg_T.
        let bare = CatalogAdapter(policy: .pyramidDropRelease(tier: .t64), tier: .t64)
        let failed = law(checkConformance(bare, options: ConformanceOptions(seeds: [], models: [])), .tierDeclared)
        #expect(failed.status == .failed)
        #expect(failed.failures.first?.actual == "80.44")
    }

    @Test func exampleAdaptersPass() {
        for a in [DuplicationAwareAdapter.tier(.t192), .tier(.t64)] {
            let r = checkConformance(a, options: Self.quick)
            #expect(r.passed, "\(r.rendered())")
            #expect(law(r, .tierDeclared).status == .passed)
            #expect(law(r, .equalScores).status == .notApplicable)
        }
        let random = checkConformance(SeededRandomAdapter(seed: 7, keepRatio: 0.25), options: Self.quick)
        #expect(random.passed, "\(random.rendered())")
    }

    @Test func unseededRandomnessBreaksDeterminism() {
        let r = checkConformance(BrokenAdapters.Unseeded(), options: Self.quick)
        let d = law(r, .determinism)
        #expect(d.status == .failed)
        #expect(d.failures.first?.input.contains("seed 1") == true)
        #expect(d.failures.first?.location.contains("decision at layer") == true)
        #expect(!r.passed)
    }

    @Test func overBudgetSelectionIsMalformed() {
        let r = checkConformance(BrokenAdapters.OverBudget(), options: Self.quick)
        let w = law(r, .decisionsWellFormed)
        #expect(w.status == .failed)
        #expect(w.failures.first?.actual.contains("the budget is") == true, "\(w.failures)")
    }

    /// Each flawed merge plan is refused before anything runs and reported under merges-declared.
    @Test(arguments: [(BrokenAdapters.BadMerge.Flaw.negativeWeight, "weight -0.5 is not finite and ≥ 0"),
                      (.overBudget, "the budget is"), (.sourceOutsideGrid, "are not strictly ascending cells of the grid")])
    func flawedMergesAreCaught(flaw: BrokenAdapters.BadMerge.Flaw, message: String) {
        let r = checkConformance(BrokenAdapters.BadMerge(flaw: flaw), options: Self.quick)
        let m = law(r, .mergesDeclared)
        #expect(m.status == .failed && !r.passed)
        #expect(m.failures.first?.actual.contains(message) == true && m.failures.first?.actual.contains("invalid merge before the LLM") == true,
                "\(m.failures)")
    }

    /// The budget law counts the visual tokens the LLM received, not the declared stage's K1.
    @Test func ownMergeBelowTheStageBudgetPassesTheBudgetLaw() throws {
        let w = withProjector(tinyRandomWeights(layers: 8), dv: 6, seed: 3)
        let c = randomCase(for: w, seed: 9, prefix: 2, grid: ImageGrid(rows: 4, cols: 6), suffix: 2, visionDim: 6, gapped: true)
        let adapter = BrokenAdapters.SmallerThanStage()
        let t = try TraceRecorder.record(decoder: ReferenceDecoder(weights: w), model: "tiny", case: c, adapter: adapter, seed: 1)
        #expect(t.budget.llmVisualTokens == 13)  // ⌊24 · 336/576⌋ − 1
        let failures = TraceLaws.check(t, capabilities: adapter.capabilities, input: "test")
        #expect(failures[.budgetDeclared, default: []].isEmpty, "\(failures)")
        #expect(failures[.scheduleExecuted, default: []].isEmpty, "\(failures)")
    }

    @Test func highIndexTieBreakIsCaught() {
        let r = checkConformance(BrokenAdapters.HighIndexTies(), options: Self.quick)
        let e = law(r, .equalScores)
        #expect(e.status == .failed)
        #expect(e.failures.first?.location.contains("score spread 0.0") == true, "\(e.failures)")
        #expect(law(r, .topKTieBreak).status == .failed)  // the uniform-attention runs have ties
    }

    @Test func ignoringPolicyChangesIsCaught() {
        let r = checkConformance(BrokenAdapters.IgnoresPolicyChanges(), options: Self.quick)
        let l = law(r, .ratioOneIsDense)
        #expect(l.status == .failed)
        #expect(l.failures.first?.location == "with(policy:)")
    }

    @Test func waiversMustNameALawAndAReason() {
        let typo = CatalogAdapter(policy: .fastVRelease(tier: .t64), waivers: [Waiver(law: "tier-declard", reason: "typo")])
        let r = checkConformance(typo, options: ConformanceOptions(seeds: [], models: []))
        #expect(!r.passed)
        #expect(law(r, .determinism).failures.first?.actual == "unknown law")
        let silent = CatalogAdapter(policy: .fastVRelease(tier: .t64), waivers: [Waiver(law: "tier-declared", reason: " ")])
        #expect(!checkConformance(silent, options: ConformanceOptions(seeds: [], models: [])).passed)
    }

    @Test func falseBudgetClaimsAreCaught() {
        var p = RoutingPolicy.fastVRelease(tier: .t192)
        p.budgetMatching = .perLayer(base: "fastv-release-64")
        let r = checkConformance(CatalogAdapter(policy: p, tier: .t64), options: ConformanceOptions(seeds: [], models: []))
        #expect(law(r, .budgetMatching).status == .failed)
        #expect(law(r, .tierDeclared).status == .failed)
    }

    // MARK: Trace laws on traces from elsewhere

    func golden(_ model: String, _ policy: String) throws -> Trace {
        try Trace.read(from: Repo.root.appendingPathComponent("golden/traces/\(model)/\(policy).h5").path)
    }

    @Test(arguments: ["dense", "pdrop", "reroute-fastv-64", "nuwa-192"])
    func goldenTracesSatisfyTraceLaws(_ policy: String) throws {
        let r = checkConformance(trace: try golden("tiny-qwen2", policy), name: policy)
        #expect(r.passed, "\(r.rendered())")
    }

    @Test func tamperedTracesBreakTheirLaws() throws {
        let t = try golden("tiny-llama", "reroute-fastv-192")
        let first = try #require(t.decisions.first?.layer)
        func failed(_ x: Trace) -> Set<ConformanceLaw> { Set(checkConformance(trace: x, name: "tampered").failed.map(\.law)) }

        var dropText = t
        dropText.processed[first].removeLast()  // the last text token
        #expect(failed(dropText).contains(.textNeverDropped))

        var moved = t
        let p = t.input.prefixTokens.count
        let bypassed = try #require((p..<(p + t.input.visual.count)).first { !t.processed[first].contains($0) })
        moved.hiddenStates[first + 1][bypassed][0] += 1
        #expect(failed(moved) == [.bypassIdentity, .deferredStale])  // a deferred row moved inside its stage

        var shifted = t
        shifted.layerPositions[first] = PositionIDs(t.layerPositions[first].linear.map { $0 + 1 })
        #expect(failed(shifted).contains(.positionsDeclared))

        var decodeRouted = t
        decodeRouted.kvLengthAfterDecode[first] -= 1
        #expect(failed(decodeRouted) == [.noRoutingAtDecode])

        var unsorted = t
        unsorted.decisions[0].kept.swapAt(0, 1)
        #expect(failed(unsorted).contains(.decisionsWellFormed))

        var shortCache = t
        shortCache.kvLength[first] -= 1
        #expect(failed(shortCache).contains(.kvLength))

        var otherLayer = t
        otherLayer.decisions[1].layer += 1
        #expect(failed(otherLayer).contains(.scheduleExecuted))

        // Keep a lower-scored candidate instead of the best deferred one: not top-k.
        var notTopK = t
        let d = t.decisions[0]
        let best = try #require(d.deferred.max { d.scores[d.candidates.firstIndex(of: $0)!] < d.scores[d.candidates.firstIndex(of: $1)!] })
        let worst = try #require(d.kept.min { d.scores[d.candidates.firstIndex(of: $0)!] < d.scores[d.candidates.firstIndex(of: $1)!] })
        notTopK.decisions[0].kept = (d.kept.filter { $0 != worst } + [best]).sorted()
        notTopK.decisions[0].deferred = (d.deferred.filter { $0 != best } + [worst]).sorted()
        #expect(failed(notTopK).contains(.topKTieBreak))
    }
}


/// The adapter guide's examples as written: its adapter is the file the example target
/// compiles (so it builds against the public API only), and its run of the suite passes.
@Suite struct AdapterGuideTests {
    static func swiftBlocks() throws -> [String] {
        let text = try String(contentsOf: Repo.root.appendingPathComponent("docs/adding-an-adapter.md"), encoding: .utf8)
        return text.components(separatedBy: "```swift\n").dropFirst().map { String($0.components(separatedBy: "```")[0]) }
    }

    @Test func theGuidesAdapterIsTheCompiledOne() throws {
        let blocks = try Self.swiftBlocks()
        let compiled = try String(contentsOf: Repo.root.appendingPathComponent("Examples/DARTStyleAdapter/Sources/DARTStyleAdapter/GuideAdapter.swift"),
                                  encoding: .utf8)
        let code = compiled.components(separatedBy: "\n").drop { $0.hasPrefix("//") }.joined(separator: "\n")
        #expect(blocks.first == code, "docs/adding-an-adapter.md §2 and GuideAdapter.swift differ")
    }

    /// The merging example of §5 is the compiled one, and passes.
    @Test func theGuidesMergingAdapterIsTheCompiledOneAndPasses() throws {
        let compiled = try String(contentsOf: Repo.root.appendingPathComponent("Examples/MergingAdapter/Sources/MergingAdapter/GuideMergingAdapter.swift"),
                                  encoding: .utf8)
        let code = compiled.components(separatedBy: "\n").drop { $0.hasPrefix("//") }.joined(separator: "\n")
        #expect(try Self.swiftBlocks().contains(code), "docs/adding-an-adapter.md §5 and GuideMergingAdapter.swift differ")
        let report = checkConformance(PairMergingAdapter(policy: .fastVRelease(tier: .t192)))
        #expect(report.passed, "\(report.rendered())")
        #expect(report.results.first { $0.law == .mergesDeclared }?.status == .passed)
    }

    @Test func theGuidesRunPasses() throws {
        // The guide's §4 call, verbatim but for `print`.
        #expect(try Self.swiftBlocks().contains { $0.contains("checkConformance(MyAdapter(policy: .fastVRelease(tier: .t192)))") })
        let report = checkConformance(MyAdapter(policy: .fastVRelease(tier: .t192)))
        #expect(report.passed, "\(report.rendered())")
    }
}
