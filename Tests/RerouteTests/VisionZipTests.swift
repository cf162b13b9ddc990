import Foundation
import RerouteConformance
import RerouteFixtures
import RerouteModel
import RerouteReference
import RerouteRouting
import RerouteTrace
import RerouteVerify
import Testing

/// VisionZip (SPEC.md §8.17) and the contiguous merge layout it needs (§8.16).
@Suite struct VisionZipTests {
    /// A 2×4 image: CLS attention m, 2-D keys, one-column features x_j = j + 1, CLS feature 100.
    static func handCase(prefix: Int = 2, suffix: Int = 2) -> PromptCase {
        let m: [Float] = [0.1, 0.9, 0.2, 0.8, 0.3, 0.05, 0.4, 0.6]
        let keys: [Float] = [1, 0, 9, 9, 1, 0.1, 9, 9, 0.1, 1, 0, 1, 0.2, 1, 1, 1]
        let x = Matrix(rows: 8, cols: 1, values: (0..<8).map { Float($0 + 1) })
        return PromptCase(name: "hand", prefixTokens: Array(1...prefix), suffixTokens: Array(1...suffix), visual: .features(x),
                          grid: ImageGrid(rows: 2, cols: 4),
                          visionSide: VisionSideInputs(clsAttention: m, similarityFeatures: Matrix(rows: 8, cols: 2, values: keys),
                                                       clsFeature: [100]))
    }

    /// D = 3 (the CLS token and the 2 patches of largest m: cells 1 and 3), C = 2. The other
    /// patches, ascending, are [0, 2, 4, 5, 6, 7]: step ⌊6/2⌋ = 3 makes cells 0 and 5 the
    /// targets. Cell 2 (key (1, 0.1)) joins 0, cells 4 and 6 (keys near (0, 1)) join 5, and
    /// cell 7 (key (1, 1), equally close to both) joins the first target, 0. Each target
    /// adds the mean of what joined it: 1 + (3 + 8)/2 = 6.5 and 6 + (5 + 7)/2 = 12. The LLM
    /// sequence is CLS, 1, 3, then the targets, numbered 0 … 8.
    @Test func visionZipByHand() throws {
        let c = Self.handCase()
        let stage = VisionZipStage(dominantRatio: 3.0 / 8, contextualRatio: 2.0 / 8)
        #expect(stage.counts(patches: 8) == (3, 2) && stage.budget(grid: c.grid) == 5)
        guard case .features(let x) = c.visual else { return }
        let plan = try stage.mergePlan(features: x, inputs: c.visionSide!, grid: c.grid)
        #expect(plan.layout == .listedContiguous)
        #expect(plan.tokens == [.kept(8), .kept(1), .kept(3), MergedToken(cell: 0, sources: [0, 2, 7], weights: [1, 0.5, 0.5]),
                                MergedToken(cell: 5, sources: [4, 5, 6], weights: [0.5, 1, 0.5])])
        #expect(plan.problem(grid: c.grid, budget: 5, cls: true) == nil)
        #expect(plan.problem(grid: c.grid, budget: 5) != nil, "the CLS cell is only valid when the case carries a CLS feature")
        let llm = try plan.apply(to: c)
        guard case .features(let merged) = llm.visual else { Issue.record("features expected"); return }
        #expect(merged.values == [100, 2, 4, 6.5, 12])
        #expect(llm.visualGridIndices == [8, 1, 3, 0, 5])
        #expect(llm.positions == .contiguous(9))
        try llm.validate(for: ConformanceModel.standard[0].config, projector: nil, file: "hand", checkProjector: false)
    }

    /// The contiguous layout numbers from the case's smallest id (so shifting every id shifts
    /// the LLM's), and is refused on 3-D positions; the stage refuses videos and a case
    /// without the CLS feature.
    @Test func refusals() throws {
        let stage = VisionZipStage(dominantRatio: 3.0 / 8, contextualRatio: 2.0 / 8)
        var c = Self.handCase()
        c.positions = PositionIDs(Array(7..<(7 + c.sequenceLength)))
        guard case .features(let x) = c.visual else { return }
        let plan = try stage.mergePlan(features: x, inputs: c.visionSide!, grid: c.grid)
        #expect(try plan.apply(to: c).positions == .contiguous(9, from: 7))
        var mrope = c
        mrope.positions = .multimodal(prefix: 2, grid: c.grid, suffix: 2)
        #expect(throws: RoutingError.self) { try plan.apply(to: mrope) }
        var noCLS = c.visionSide!
        noCLS.clsFeature = nil
        #expect(throws: RoutingError.self) { try stage.mergePlan(features: x, inputs: noCLS, grid: c.grid) }
        #expect(throws: RoutingError.self) { try RoutingPolicy.visionZip(tier: .t64).check(grid: ImageGrid(rows: 2, cols: 2, frames: 2)) }
    }

    /// More contextual slots than remaining patches: each remaining patch is a target of its
    /// own (N + 1 tokens, within the budget), none merged.
    @Test func moreSlotsThanPatches() throws {
        let c = Self.handCase()
        let stage = VisionZipStage(dominantRatio: 6.0 / 8, contextualRatio: 1)
        guard case .features(let x) = c.visual else { return }
        let plan = try stage.mergePlan(features: x, inputs: c.visionSide!, grid: c.grid)
        // Dominant: CLS and the 5 largest m (cells 1, 3, 7, 6, 4); the rest 0, 2, 5, each alone.
        #expect(plan.tokens == [8, 1, 3, 4, 6, 7, 0, 2, 5].map(MergedToken.kept))
        #expect(plan.problem(grid: c.grid, budget: stage.budget(grid: c.grid), cls: true) == nil)
    }

    /// The official counts on LLaVA-1.5's 576 patches: D + C = the tier.
    @Test func tierCounts() {
        let grid = ImageGrid(rows: 24, cols: 24)
        for (tier, d, c) in [(Tier.t64, 54, 10), (.t128, 108, 20), (.t192, 162, 30)] {
            let stage = RoutingPolicy.visionZip(tier: tier).visionZip!
            #expect(stage.counts(patches: 576) == (d, c))
            #expect(stage.budget(grid: grid) == tier.rawValue)
        }
    }

    /// A listed layout cannot be followed by decisions in the LLM (they record ascending grid
    /// cells), and a plan at cells must list them ascending.
    @Test func listedLayoutRules() throws {
        var p = RoutingPolicy.visionZip(tier: .t64)
        p.visionZip = VisionZipStage(dominantRatio: 3.0 / 8, contextualRatio: 2.0 / 8)
        let w = RandomModel.weights(ConformanceModel.standard[0].config, visionDim: 1, seed: 3)
        _ = try RoutedPrefill.prepare(decoder: ReferenceDecoder(weights: w), case: Self.handCase(), policy: p)
        p.decisionLayers = [2]
        p.keepRatios = [0.5]
        #expect(throws: RoutingError.self) {
            _ = try RoutedPrefill.prepare(decoder: ReferenceDecoder(weights: w), case: Self.handCase(), policy: p)
        }
        let unordered = MergePlan(tokens: [.kept(3), .kept(1)])
        #expect(unordered.problem(grid: ImageGrid(rows: 2, cols: 4), budget: 8) != nil)
        #expect(MergePlan(tokens: [.kept(3), .kept(1)], layout: .listedContiguous).problem(grid: ImageGrid(rows: 2, cols: 4), budget: 8) == nil)
        #expect(MergePlan(tokens: [.kept(3), .kept(3)], layout: .listedContiguous).problem(grid: ImageGrid(rows: 2, cols: 4), budget: 8) != nil)
    }

    /// `visual_grid_indices`: distinct cells; cell N only with a CLS feature.
    @Test func gridIndicesRule() {
        let g = ImageGrid(rows: 2, cols: 4)
        #expect(PromptCase.gridIndicesProblem([8, 1, 3], grid: g, hasCLS: true) == nil)
        #expect(PromptCase.gridIndicesProblem([8, 1, 3], grid: g, hasCLS: false) != nil)
        #expect(PromptCase.gridIndicesProblem([9], grid: g, hasCLS: true) != nil)
        #expect(PromptCase.gridIndicesProblem([1, 1], grid: g, hasCLS: false) != nil)
        #expect(PromptCase.gridIndicesProblem([-1], grid: g, hasCLS: false) != nil)
    }

    /// The golden: the LLM receives the CLS token first, then ascending dominant cells, then
    /// ascending targets; every layer runs them at 0 … S'−1; the trace round-trips through
    /// the case file format with the CLS feature.
    @Test func goldenLayout() throws {
        let t = try Trace.read(from: Repo.root.appendingPathComponent("golden/traces/tiny-llama/visionzip-64.h5").path)
        let cells = try #require(t.llmGridIndices)
        #expect(cells.first == t.input.grid.clsCell && cells.count == 11)
        let rest = Array(cells.dropFirst())
        let split = rest.indices.first { $0 > 0 && rest[$0] < rest[$0 - 1] } ?? rest.count
        #expect(split == 8, "8 dominant patches, then 2 contextual")
        #expect(Array(rest[..<split]) == rest[..<split].sorted() && Array(rest[split...]) == rest[split...].sorted())
        #expect(t.input.visionSide?.clsFeature != nil)
        for l in 0..<t.config.layers { #expect(t.layerPositions[l] == .contiguous(t.sequenceLength)) }
    }
}
