/// Rows × columns of the visual tokens (e.g. 24×24 for LLaVA-1.5 at 336 px), and for a
/// video the number of frames (temporal patches): token `t·rows·cols + r·cols + c` is frame
/// t's cell (r, c), in raster order frame after frame.
public struct ImageGrid: Sendable, Equatable, Codable {
    public var rows: Int
    public var cols: Int
    /// Temporal patches of a video (Qwen2.5-VL's `grid_t`); 1 for an image.
    public var frames: Int
    public init(rows: Int, cols: Int, frames: Int = 1) { self.rows = rows; self.cols = cols; self.frames = frames }
    /// Number of visual tokens, frames · rows · cols.
    public var count: Int { frames * rows * cols }
    /// Tokens per frame, rows · cols.
    public var cellsPerFrame: Int { rows * cols }
    /// The cell number that stands for the image's CLS token (one past the last cell), in
    /// merge sources and `visual_grid_indices`, when a case carries the CLS feature.
    public var clsCell: Int { count }
    public var isVideo: Bool { frames > 1 }
    /// `ROWSxCOLS`, or `FRAMESxROWSxCOLS` for a video.
    public var description: String { isVideo ? "\(frames)x\(rows)x\(cols)" : "\(rows)x\(cols)" }
    /// The stored form (`/inputs/grid`): `[rows, cols]`, or `[frames, rows, cols]` for a video.
    public var shape: [Int] { isVideo ? [frames, rows, cols] : [rows, cols] }

    enum CodingKeys: String, CodingKey { case rows, cols, frames }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(rows: try c.decode(Int.self, forKey: .rows), cols: try c.decode(Int.self, forKey: .cols),
                  frames: try c.decodeIfPresent(Int.self, forKey: .frames) ?? 1)
    }

    /// Largest `rows · cols` accepted from text: a case's whole sequence limit.
    public static let maxCountFromText = PromptCase.maxSequenceLength

    /// Parses `ROWSxCOLS` (e.g. `24x24`; `X` also accepted) or `FRAMESxROWSxCOLS` with more
    /// than one frame (a video; one frame is written `ROWSxCOLS`, as a case file stores it):
    /// integers in `1 ... PromptCase.maxGridSide` whose product is at most `maxCountFromText`.
    /// The one grid syntax of the command line.
    public init?(parsing text: String) {
        let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.count == 2 || parts.count == 3, parts.allSatisfy({ (1...PromptCase.maxGridSide).contains($0 ?? 0) }) else { return nil }
        let v = parts.map { $0! }
        guard v.count == 2 || v[0] > 1 else { return nil }
        var n = 1
        for x in v {
            let (m, overflow) = n.multipliedReportingOverflow(by: x)
            guard !overflow, m <= Self.maxCountFromText else { return nil }
            n = m
        }
        self = v.count == 2 ? ImageGrid(rows: v[0], cols: v[1]) : ImageGrid(rows: v[1], cols: v[2], frames: v[0])
    }
}

/// The visual tokens' place in the prefill sequence: indices `start ..< start + length`.
public struct VisualSpan: Sendable, Equatable, Codable {
    public var start: Int
    public var length: Int
    public init(start: Int, length: Int) { self.start = start; self.length = length }
    public var range: Range<Int> { start..<(start + length) }
}

/// Where the visual tokens come from.
public enum VisualInput: Sendable, Equatable {
    /// Vision-encoder features `[N, d_vision]`; the model's projector maps them to `[N, d]`.
    case features(Matrix)
    /// Visual embeddings `[N, d]`, used as they are.
    case embeddings(Matrix)

    /// Number of visual tokens N.
    public var count: Int {
        switch self {
        case .features(let m), .embeddings(let m): m.rows
        }
    }
}

/// RoPE position ids of a token sequence, stored as axes × tokens.
///
/// One axis is ordinary 1-D RoPE (LLaMA, Qwen2). Three axes (t, h, w) are reserved for
/// Qwen2.5-VL's M-RoPE; the type already carries them so adding M-RoPE changes no API.
/// Positions need not be contiguous: pruners that keep original positions leave gaps.
public struct PositionIDs: Sendable, Equatable {
    /// `axes[a][i]` is token i's position on axis a; all axes have the same length.
    public let axes: [[Int]]

    /// 1-D positions.
    public init(_ ids: [Int]) { axes = [ids] }

    /// Positions with one or three axes of equal length.
    public init(axes: [[Int]]) {
        precondition(axes.count == 1 || axes.count == 3, "PositionIDs: 1 or 3 axes, got \(axes.count)")
        precondition(axes.allSatisfy { $0.count == axes[0].count }, "PositionIDs: axes of different lengths")
        self.axes = axes
    }

    /// Contiguous positions `0 ..< count`.
    public static func contiguous(_ count: Int) -> PositionIDs { PositionIDs(Array(0..<count)) }
    /// `first, first + 1, …, first + count − 1` (1-D).
    public static func contiguous(_ count: Int, from first: Int) -> PositionIDs { PositionIDs(Array(first..<(first + count))) }

    /// Number of tokens.
    public var count: Int { axes[0].count }
    public var axisCount: Int { axes.count }
    public var isMultimodal: Bool { axes.count == 3 }

    /// The 1-D positions (precondition: one axis).
    public var linear: [Int] {
        precondition(axes.count == 1, "PositionIDs.linear on \(axes.count)-axis positions")
        return axes[0]
    }

    /// Token i's position on up to three axes (one-axis positions repeat), for cheap comparisons.
    public func column(_ i: Int) -> SIMD3<Int> {
        let last = axes.count - 1
        return SIMD3(axes[0][i], axes[min(1, last)][i], axes[min(2, last)][i])
    }

    /// Positions of the tokens at `indices`, in that order (a slice, never recomputed).
    public func gathering(_ indices: [Int]) -> PositionIDs {
        PositionIDs(axes: axes.map { axis in indices.map { axis[$0] } })
    }

    /// Qwen2-VL / Qwen2.5-VL 3-D positions for one image (transformers' `get_rope_index`, one
    /// temporal frame, LLM grid rows×cols after spatial merging): prefix token i at (i, i, i);
    /// visual token r·cols + c at (P, P + r, P + c); suffix token j at P + max(rows, cols) + j
    /// on all three axes.
    public static func multimodal(prefix p: Int, grid: ImageGrid, suffix q: Int) -> PositionIDs {
        precondition(!grid.isVideo, "PositionIDs.multimodal is one image; a video's are PositionIDs.video")
        let n = grid.count, after = p + max(grid.rows, grid.cols)
        let text = Array(0..<p), tail = (0..<q).map { after + $0 }
        let t = text + Array(repeating: p, count: n) + tail
        let h = text + (0..<n).map { p + $0 / grid.cols } + tail
        let w = text + (0..<n).map { p + $0 % grid.cols } + tail
        return PositionIDs(axes: [t, h, w])
    }

    /// Qwen2.5-VL 3-D positions for one video (transformers' `get_rope_index`): prefix token i
    /// at (i, i, i); the token of frame t, cell (r, c) at (P + t·s, P + r, P + c), with
    /// `s = temporalStride` (`int(tokens_per_second · second_per_grid_t)`, 2 for Qwen2.5-VL
    /// at 2 fps); suffix token j at `P + max((frames − 1)·s, rows − 1, cols − 1) + 1 + j`.
    public static func video(prefix p: Int, grid: ImageGrid, temporalStride s: Int, suffix q: Int) -> PositionIDs {
        let n = grid.count, cells = grid.cellsPerFrame
        let after = p + max((grid.frames - 1) * s, grid.rows - 1, grid.cols - 1) + 1
        let text = Array(0..<p), tail = (0..<q).map { after + $0 }
        let t = text + (0..<n).map { p + ($0 / cells) * s } + tail
        let h = text + (0..<n).map { p + ($0 % cells) / grid.cols } + tail
        let w = text + (0..<n).map { p + $0 % grid.cols } + tail
        return PositionIDs(axes: [t, h, w])
    }

    /// The position of the first generated token: one past the largest position on any
    /// axis (SPEC.md §4; equals the sequence length for contiguous 1-D positions).
    public var nextDecodePosition: Int { (axes.map { $0.max() ?? -1 }.max() ?? -1) + 1 }
}

/// Per-image inputs a vision-side stage reads (Nüwa's stage 1, VisionZip), one entry per grid cell.
public struct VisionSideInputs: Sendable, Equatable {
    /// CLS-row attention of the vision encoder to each patch (summed over heads), `[N]`.
    public var clsAttention: [Float]
    /// Features whose cosine similarity drives aggregation, `[N, d_s]` (Nüwa: mean hidden
    /// states of later CLIP layers; VisionZip: layer −2's keys, averaged over heads).
    public var similarityFeatures: Matrix
    /// The vision encoder's CLS token at the layer the patch features come from, `[d_vision]`,
    /// when a stage hands it to the LLM (VisionZip keeps it). As a merge source and in
    /// `visual_grid_indices` it is cell `N` (`ImageGrid.clsCell`).
    public var clsFeature: [Float]?

    public init(clsAttention: [Float], similarityFeatures: Matrix, clsFeature: [Float]? = nil) {
        self.clsAttention = clsAttention
        self.similarityFeatures = similarityFeatures
        self.clsFeature = clsFeature
    }
}

/// The input of one run: text before the image, the image, text after it, positions.
///
/// The prefill sequence is `prefixTokens ++ visual ++ suffixTokens`, so the visual span is
/// `[prefixTokens.count, prefixTokens.count + N)`. The last prefill token is the last
/// suffix token (the last instruction token for LLaVA-style prompts).
public struct PromptCase: Sendable, Equatable {
    public var name: String
    public var prefixTokens: [Int]
    public var suffixTokens: [Int]
    public var visual: VisualInput
    public var grid: ImageGrid
    public var positions: PositionIDs
    /// Greedy tokens to generate after the prefill.
    public var decodeSteps: Int
    /// Grid cell of each visual token in sequence order; nil means all cells in order
    /// (`0 ..< N`). Set when a vision-side stage kept a subset of the image or merged it
    /// (`gridIndicesProblem` says which lists are valid).
    public var visualGridIndices: [Int]?
    /// Inputs of a vision-side stage (optional).
    public var visionSide: VisionSideInputs?

    public init(name: String, prefixTokens: [Int], suffixTokens: [Int], visual: VisualInput, grid: ImageGrid,
                positions: PositionIDs? = nil, decodeSteps: Int = 0, visualGridIndices: [Int]? = nil,
                visionSide: VisionSideInputs? = nil) {
        self.name = name
        self.prefixTokens = prefixTokens
        self.suffixTokens = suffixTokens
        self.visual = visual
        self.grid = grid
        self.positions = positions ?? .contiguous(prefixTokens.count + visual.count + suffixTokens.count)
        self.decodeSteps = decodeSteps
        self.visualGridIndices = visualGridIndices
        self.visionSide = visionSide
    }

    /// Grid cell of visual token j.
    public var gridIndices: [Int] { visualGridIndices ?? Array(0..<visual.count) }

    /// Why `cells` is not a valid `visual_grid_indices` list for `grid`, or nil: distinct
    /// cells of the grid (sequence order; ascending unless a merge lists them otherwise,
    /// SPEC.md §8.16), where cell `N` is the image's CLS token and only allowed when the case
    /// carries one.
    public static func gridIndicesProblem(_ cells: [Int], grid: ImageGrid, hasCLS: Bool) -> String? {
        let limit = hasCLS ? grid.clsCell : grid.count - 1
        if let c = cells.first(where: { !(0...limit).contains($0) }) {
            return "cell \(c) is outside the \(grid.description) grid\(hasCLS ? " and its CLS token (\(grid.clsCell))" : "")"
        }
        if Set(cells).count != cells.count { return "lists a cell twice" }
        return nil
    }

    /// S: prefill length.
    public var sequenceLength: Int { prefixTokens.count + visual.count + suffixTokens.count }
    public var visualSpan: VisualSpan { VisualSpan(start: prefixTokens.count, length: visual.count) }

    /// Largest grid side and decode length a case may ask for (hostile files must not make a
    /// run overflow or allocate without bound; LLaVA-1.5 uses 24, Qwen2.5-VL a few hundred).
    public static let maxGridSide = 4096
    public static let maxDecodeSteps = 1 << 16
    /// Largest prefill sequence S (text + visual tokens; SPEC.md §12): 64 Ki tokens, far
    /// beyond LLaVA's 600 and a long Qwen2.5-VL video's tens of thousands.
    public static let maxSequenceLength = 1 << 16
    /// Largest position id (the `max_position_embeddings` cap), so decode positions
    /// `max + k` never overflow.
    public static let maxPositionID = 1 << 30
    /// Largest number of float elements in a case's visual inputs (1 GiB of f32), checked on
    /// the declared dataset shapes before anything is read.
    public static let maxVisualElements = 1 << 28

    /// Checks the case against a model; `file` names the source in errors. With
    /// `checkProjector: false` (traces, whose model folder is not at hand) the feature width
    /// is not checked against a projector.
    public func validate(for config: ModelConfig, projector: ProjectorWeights?, file: String, checkProjector: Bool = true) throws {
        func bad(_ object: String, _ why: String) -> InputError { InputError(.badCase, file: file, object: object, why) }
        if !(1...Self.maxGridSide).contains(grid.rows) || !(1...Self.maxGridSide).contains(grid.cols)
            || !(1...Self.maxGridSide).contains(grid.frames) {
            throw bad("grid", "\(grid.description) must be 1 ... \(Self.maxGridSide) frames, rows and columns")
        }
        if grid.count > Self.maxSequenceLength { throw bad("grid", "\(grid.description) holds more than \(Self.maxSequenceLength) tokens") }
        if decodeSteps > Self.maxDecodeSteps { throw bad("decode_steps", "\(decodeSteps) exceeds the supported \(Self.maxDecodeSteps)") }
        if prefixTokens.count > Self.maxSequenceLength || suffixTokens.count > Self.maxSequenceLength
            || prefixTokens.count + suffixTokens.count + visual.count > Self.maxSequenceLength {
            throw bad("prefix_ids", "the sequence (\(prefixTokens.count) + \(visual.count) + \(suffixTokens.count) tokens) exceeds \(Self.maxSequenceLength)")
        }
        if visual.count < 1 { throw bad("visual", "a case needs at least one visual token") }
        if suffixTokens.isEmpty { throw bad("suffix_ids", "a case needs at least one text token after the image (the scoring query)") }
        if let idx = visualGridIndices {
            if idx.count != visual.count { throw bad("visual_grid_indices", "\(idx.count) indices for \(visual.count) visual tokens") }
            if let why = Self.gridIndicesProblem(idx, grid: grid, hasCLS: visionSide?.clsFeature != nil) { throw bad("visual_grid_indices", why) }
        } else if grid.rows < 1 || grid.cols < 1 || grid.count != visual.count {
            throw bad("grid", "\(grid.description) does not hold the \(visual.count) visual tokens")
        }
        if let v = visionSide {
            if v.clsAttention.count != grid.count || v.similarityFeatures.rows != grid.count {
                throw bad("vision_side", "CLS attention and similarity features need one row per grid cell (\(grid.count))")
            }
            if !v.clsAttention.allSatisfy(\.isFinite) || !v.similarityFeatures.values.allSatisfy(\.isFinite)
                || !(v.clsFeature ?? []).allSatisfy(\.isFinite) {
                throw InputError(.badValue, file: file, object: "vision_side", "contains NaN or Inf")
            }
            if let cls = v.clsFeature {
                guard case .features(let x) = visual, cls.count == x.cols else {
                    throw bad("vision_side/cls_feature", "\(cls.count) values; it needs the width of the case's visual_features")
                }
            }
        }
        for (label, ids) in [("prefix_ids", prefixTokens), ("suffix_ids", suffixTokens)] {
            if let t = ids.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
                throw bad(label, "token id \(t) is outside the vocabulary [0, \(config.vocabSize))")
            }
        }
        if positions.count != sequenceLength {
            throw bad("positions", "\(positions.count) position ids for \(sequenceLength) tokens")
        }
        if positions.axes.contains(where: { $0.contains { $0 < 0 } }) { throw bad("positions", "negative position id") }
        if let p = positions.axes.joined().first(where: { $0 > Self.maxPositionID }) {
            throw bad("positions", "position id \(p) exceeds \(Self.maxPositionID)")
        }
        if positions.isMultimodal, config.mropeSection == nil {
            throw bad("positions", "3-D (t, h, w) positions need a model with M-RoPE (mrope_section); this one has 1-D RoPE")
        }
        if decodeSteps < 0 { throw bad("decode_steps", "negative") }
        switch visual {
        case .features(let m):
            if !checkProjector {
                if !m.values.allSatisfy(\.isFinite) { throw InputError(.badValue, file: file, object: "visual_features", "contains NaN or Inf") }
                break
            }
            guard let projector else { throw bad("visual_features", "the model has no multimodal projector to map features") }
            if m.cols != projector.visionDim {
                throw bad("visual_features", "width \(m.cols), the projector takes \(projector.visionDim)")
            }
            if !m.values.allSatisfy(\.isFinite) { throw InputError(.badValue, file: file, object: "visual_features", "contains NaN or Inf") }
        case .embeddings(let m):
            if m.cols != config.hiddenSize { throw bad("visual_embeddings", "width \(m.cols), the model's hidden size is \(config.hiddenSize)") }
            if !m.values.allSatisfy(\.isFinite) { throw InputError(.badValue, file: file, object: "visual_embeddings", "contains NaN or Inf") }
        }
    }
}
