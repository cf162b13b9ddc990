import Foundation
import RerouteModel
import RerouteReference
@testable import RerouteRouting
import RerouteHDF5
import RerouteTrace
import RerouteVerify
import Testing

/// EVS on a video (SPEC.md §8.15) and the video's positions, both rules (§4, §8.6).
@Suite struct EVSTests {
    static func input(_ states: [[Double]], grid: ImageGrid, budget: Int) -> SelectionInput {
        SelectionInput(layer: 0, stage: 0, budget: budget, candidates: Array(states.indices), grid: grid, gridCells: Array(states.indices),
                       attentionScores: { Issue.record("EVS read attention"); return [] }, hiddenStates: { states })
    }

    /// Two frames of 1×2 cells. Frame 1's cell 0 repeats frame 0's (dissimilarity 0), its cell
    /// 1 turns by 90° (dissimilarity 1): frame 0 first, then the changed cell; ties to the
    /// lower index.
    @Test func evsByHand() throws {
        let grid = ImageGrid(rows: 1, cols: 2, frames: 2)
        let states: [[Double]] = [[1, 0], [0, 1], [2, 0], [1, 0]]
        let policy = RoutingPolicy.evs(pruningRate: 0.25)
        let s = try policy.select(Self.input(states, grid: grid, budget: 3))
        #expect(s.kept == [0, 1, 3])
        #expect(s.scores == [255, 255, 0, 1])
        #expect(try policy.select(Self.input(states, grid: grid, budget: 2)).kept == [0, 1], "frame 0 whatever the changes")
        let still: [[Double]] = [[1, 0], [0, 1], [1, 0], [0, 3]]
        #expect(try policy.select(Self.input(still, grid: grid, budget: 3)).kept == [0, 1, 2], "ties to the earlier token")
        // A candidate set that is not the whole grid cannot be compared frame to frame.
        let partial = SelectionInput(layer: 0, stage: 0, budget: 1, candidates: [0, 1, 2], grid: grid, gridCells: [0, 1, 2],
                                     attentionScores: { [] }, hiddenStates: { Array(states.prefix(3)) })
        #expect(throws: RoutingError.self) { try policy.select(partial) }
        #expect(policy.name == "evs-25" && RoutingPolicy.evs(pruningRate: 0.25, recomputed: false).name == "evs-25-kept-positions")
    }

    /// A 3-frame video of 1×2 cells after 2 text tokens, temporal stride 2: transformers puts
    /// frame t cell c at (2 + 2t, 2, 2 + c) and the text after at 2 + max(4, 0, 1) + 1 = 7;
    /// vLLM's recomputed rule puts that text at base + cols = 2 + 2 = 4.
    @Test func videoPositionsBothRules() {
        let grid = ImageGrid(rows: 1, cols: 2, frames: 3)
        let p = PositionIDs.video(prefix: 2, grid: grid, temporalStride: 2, suffix: 2)
        #expect(p.axes[0] == [0, 1, 2, 2, 4, 4, 6, 6, 7, 8])
        #expect(p.axes[1] == [0, 1, 2, 2, 2, 2, 2, 2, 7, 8])
        #expect(p.axes[2] == [0, 1, 2, 3, 2, 3, 2, 3, 7, 8])
        let active = [0, 1, 2, 5, 8, 9]  // frame 0 cell 0, frame 1 cell 1, the text
        let (kept, keptDecode) = PositionPolicy.original.layout(active: active, positions: p, visualSpan: 2..<8, grid: grid)
        #expect(kept.axes[0] == [0, 1, 2, 4, 7, 8] && keptDecode == 9)
        let (vllm, vllmDecode) = PositionPolicy.textAfterGridWidth.layout(active: active, positions: p, visualSpan: 2..<8, grid: grid)
        #expect(vllm.axes[0] == [0, 1, 2, 4, 4, 5] && vllm.axes[1] == [0, 1, 2, 2, 4, 5] && vllm.axes[2] == [0, 1, 2, 3, 4, 5])
        #expect(vllmDecode == 6)
        #expect(grid.count == 6 && grid.description == "3x1x2" && ImageGrid(parsing: "3x1x2") == grid && ImageGrid(parsing: "1x2") == ImageGrid(rows: 1, cols: 2))
        #expect(ImageGrid(parsing: "0x1x2") == nil && ImageGrid(parsing: "2x3x4x5") == nil)
        // One frame is an image, written ROWSxCOLS; a side past the case files' limit is refused.
        #expect(ImageGrid(parsing: "1x3x4") == nil && ImageGrid(parsing: "1x4097") == nil && ImageGrid(parsing: "2x4096x1") != nil)
    }

    /// The cosine the selection rules share is torch's: each norm clamped at 1e-8 separately
    /// (torch 2.13 gives 0.1 and 1.0 for these; a product clamp would give 1 and 0.01).
    @Test func cosineClampsEachNorm() {
        #expect(abs(SelectionMath.cosine([1e-9, 0], [1e3, 0]) - 0.1) < 1e-12)
        #expect(abs(SelectionMath.cosine([1e-5, 0], [1e-5, 0]) - 1) < 1e-12)
    }

    /// With no token before the span the base is where the grid's ids start (their smallest),
    /// not 0: a 1×2 video whose ids start at 2 puts the text after it at 2 + cols = 4 (vLLM's
    /// rule); a 2×3 image whose ids start at 5, with nothing kept, at 5 (OpenVINO's).
    @Test func recomputedBaseWithoutPrefix() {
        let grid = ImageGrid(rows: 1, cols: 2, frames: 3)
        let p = PositionIDs.video(prefix: 2, grid: grid, temporalStride: 2, suffix: 2)
        // Drop the two prefix tokens: the span starts the sequence with its ids from 2.
        let cut = PositionIDs(axes: p.axes.map { Array($0.dropFirst(2)) })
        let (vllm, _) = PositionPolicy.textAfterGridWidth.layout(active: [0, 3, 6, 7], positions: cut, visualSpan: 0..<6, grid: grid)
        #expect(vllm.axes[0] == [2, 4, 4, 5] && vllm.axes[2] == [2, 3, 4, 5])
        let image = ImageGrid(rows: 2, cols: 3)
        let q = PositionIDs.multimodal(prefix: 5, grid: image, suffix: 1)
        let shifted = PositionIDs(axes: q.axes.map { Array($0.dropFirst(5)) })
        let (none, decode) = PositionPolicy.textAfterKeptMax.layout(active: [6], positions: shifted, visualSpan: 0..<6, grid: image)
        #expect(none.axes == [[5], [5], [5]] && decode == 6)
    }

    /// The rule is refused where it is not defined: 1-D positions, and any action but delete.
    @Test func recomputedPositionsAreRefusedWhereUndefined() throws {
        let w = try ModelWeights.load(directory: Repo.model("tiny-llama"))
        let c = GoldenTraces.traceCase(for: w, model: "tiny-llama")
        #expect { _ = try RoutedPrefill.run(decoder: ReferenceDecoder(weights: w), case: c, policy: .evs(pruningRate: 0.5)) } throws: {
            "\($0)".contains("evs-50") && "\($0)".contains("3-D")
        }
        var routed = RoutingPolicy.evs(pruningRate: 0.5)
        routed.action = .route(monotonic: true)
        #expect { try routed.validate() } throws: { "\($0)".contains("recomputed positions need the delete action") }
    }

    /// A video case goes through a case file and a trace with its frames (`/inputs/grid` is
    /// `[frames, rows, cols]`); an image's stays `[rows, cols]`.
    @Test func videoGridIsStoredWithItsFrames() throws {
        let dir = try TempDir()
        defer { dir.cleanup() }
        let golden = try Trace.read(from: Repo.root.appendingPathComponent("golden/traces/tiny-qwen2-vl/evs-50.h5").path)
        #expect(golden.input.grid == ImageGrid(rows: 3, cols: 4, frames: 4))
        let f = try HDF5File(readingFrom: Repo.root.appendingPathComponent("golden/traces/tiny-qwen2-vl/evs-50.h5").path)
        #expect(try f.readInts("/inputs/grid").values == [4, 3, 4])
        let image = try HDF5File(readingFrom: Repo.root.appendingPathComponent("golden/traces/tiny-qwen2-vl/dart-192.h5").path)
        #expect(try image.readInts("/inputs/grid").values == [6, 8])
        try ExtremeIntegerTests.write(golden.input, to: dir.path("video.h5"))
        let back = try PromptCaseIO.read(file: dir.path("video.h5"))
        #expect(back.grid == golden.input.grid && back.positions == golden.input.positions && back.visual == golden.input.visual)
    }
}
