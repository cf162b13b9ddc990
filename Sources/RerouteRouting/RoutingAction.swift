import RerouteModel

/// What happens to visual candidates a decision does not keep (SPEC.md §8.5).
public enum RoutingAction: Sendable, Equatable, Codable {
    /// Physical removal: the token leaves the sequence for every later layer and never
    /// returns; later softmaxes no longer see it.
    case delete
    /// Routing: the token bypasses the stage's layers with its hidden state unchanged and
    /// no KV entries there. Non-monotonic: every visual token competes again at the next
    /// decision (Reroute). Monotonic: only the tokens kept at the previous decision compete.
    case route(monotonic: Bool)
}

/// Which RoPE positions processed tokens use (SPEC.md §8.6).
public enum PositionPolicy: String, Sendable, Equatable, Codable {
    /// Each token keeps the position id the case gave it (gaps after removal); decode
    /// continues at `max(position ids) + 1`. FastV, Nüwa, Reroute and the release baselines.
    case original
    /// After each decision the processed sequence is re-numbered `0 ..< n_l`, and decode at
    /// layer l continues at `n_l` (official PDrop, including its decode-position shift).
    case reindexed
    /// vLLM's recomputed M-RoPE positions under EVS (`vllm/multimodal/evs.py`,
    /// `recompute_mrope_positions`, read at 926c71f): tokens before the visual span and the
    /// kept visual tokens keep theirs (a kept token keeps its own t/h/w ids); the text after
    /// the visual span restarts at `base + cols` on every axis, contiguous, with `base` one
    /// past the last token before the span (its `<|vision_start|>`; `visualBase`); decode continues at
    /// `max(position ids) + 1`. transformers' unpruned rule starts that text at
    /// `base + max(t_max, rows − 1, cols − 1) + 1` instead. 3-D positions and delete only.
    case textAfterGridWidth
    /// OpenVINO GenAI's recomputed M-RoPE positions after pruning an image
    /// (`update_position_ids_3d`, openvino.genai@da1db86): the tokens before the visual span
    /// and the kept visual tokens keep theirs; the text after the span restarts at one past the
    /// largest position id of any kept visual token (on any axis), contiguous on every axis
    /// (at `base`, one past the last token before the span, if none is kept); decode continues
    /// at `max(position ids) + 1`. With nothing pruned it is transformers' rule for an image;
    /// pruning the last rows or columns lowers it. 3-D positions and delete only.
    case textAfterKeptMax

    /// Whether the rule is defined for 3-D M-RoPE positions only (the recomputed video and
    /// image rules).
    public var requiresMultimodal: Bool { self == .textAfterGridWidth || self == .textAfterKeptMax }

    /// The positions of the processed tokens after a decision and the first decode position:
    /// the one rule the session lays out and the trace laws check.
    /// - Parameters:
    ///   - active: processed sequence indices of the LLM-side sequence, ascending.
    ///   - positions: the LLM-side case's positions (every token).
    ///   - visualSpan: the visual tokens' sequence indices in that sequence.
    public func layout(active: [Int], positions: PositionIDs, visualSpan: Range<Int>, grid: ImageGrid) -> (positions: PositionIDs, decodePosition: Int) {
        switch self {
        case .original:
            return (positions.gathering(active), positions.nextDecodePosition)
        case .reindexed:
            return (.contiguous(active.count), active.count)
        case .textAfterGridWidth:
            let base = Self.visualBase(positions: positions, visualSpan: visualSpan)
            let out = PositionIDs(axes: positions.axes.map { axis in
                active.map { i in i < visualSpan.upperBound ? axis[i] : base + grid.cols + (i - visualSpan.upperBound) }
            })
            return (out, out.nextDecodePosition)
        case .textAfterKeptMax:
            let base = Self.visualBase(positions: positions, visualSpan: visualSpan)
            let visual = active.filter { visualSpan.contains($0) }
            let next = visual.isEmpty ? base : positions.axes.map { axis in visual.map { axis[$0] }.max()! }.max()! + 1
            let out = PositionIDs(axes: positions.axes.map { axis in
                active.map { i in i < visualSpan.upperBound ? axis[i] : next + (i - visualSpan.upperBound) }
            })
            return (out, out.nextDecodePosition)
        }
    }

    /// One past the last token before the visual span (its `<|vision_start|>`), or, with no
    /// token before it, the smallest position id of the span on any axis (where the grid's ids
    /// start), so a case starting with the image is laid out as one whose prefix was cut.
    static func visualBase(positions: PositionIDs, visualSpan: Range<Int>) -> Int {
        if visualSpan.lowerBound > 0 { return positions.axes[0][visualSpan.lowerBound - 1] + 1 }
        return positions.axes.compactMap { axis in visualSpan.map { axis[$0] }.min() }.min() ?? 0
    }
}

/// How a policy's budget relates to the method it augments (reported by the budget calculator).
public enum BudgetMatching: Sendable, Equatable, Codable {
    /// Not a variant of another method.
    case none
    /// Identical processed visual count at every layer (so identical FLOPs and KV).
    case perLayer(base: String)
    /// Same average visual tokens per layer (avg_T), different per-layer profile.
    case averageTokens(base: String)
}
