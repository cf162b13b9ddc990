import Foundation
import RerouteHDF5
import RerouteModel

/// The `/inputs` group shared by transformers reference files and traces (SPEC.md §6, §9).
public enum PromptCaseIO {
    /// Reads the case of a case file (or of a trace, whose `/inputs` is one): named by its
    /// root `case` attribute, else by the file name without its extension.
    public static func read(file path: String) throws -> PromptCase {
        let f = try HDF5File(readingFrom: path)
        let name = (try? f.stringAttribute("case")) ?? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        return try read(f, name: name)
    }

    /// Reads a prompt case from `group` (e.g. `/inputs`); `name` becomes the case name.
    public static func read(_ f: HDF5File, group g: String = "/inputs", name: String) throws -> PromptCase {
        let path = f.path
        // Declared sizes are bounded before anything is read (SPEC.md §12).
        func ints(_ p: String, rank: Int, max: Int = PromptCase.maxSequenceLength) throws -> (values: [Int], shape: [Int]) {
            let r = try f.readInts(p, maxElements: max)
            guard r.shape.count == rank else { throw InputError(.badCase, file: path, object: p, "rank \(r.shape.count), expected \(rank)") }
            return r
        }
        func matrix(_ p: String) throws -> Matrix {
            let r = try f.readFloats(p, maxElements: PromptCase.maxVisualElements)
            guard r.shape.count == 2 else { throw InputError(.badCase, file: path, object: p, "shape \(r.shape), expected [rows, cols]") }
            return Matrix(rows: r.shape[0], cols: r.shape[1], values: r.values)
        }
        let prefix = try ints("\(g)/prefix_ids", rank: 1).values
        let suffix = try ints("\(g)/suffix_ids", rank: 1).values
        let grid = try ints("\(g)/grid", rank: 1).values
        guard grid.count == 2 || (grid.count == 3 && grid[0] > 1) else {
            throw InputError(.badCase, file: path, object: "\(g)/grid", "expected [rows, cols], or [frames, rows, cols] with frames > 1 for a video")
        }
        // Bounded before anything multiplies them (frames · rows · cols must not overflow).
        guard grid.allSatisfy({ (1...PromptCase.maxGridSide).contains($0) }) else {
            throw InputError(.badCase, file: path, object: "\(g)/grid", "\(grid) must be 1 ... \(PromptCase.maxGridSide) frames, rows and columns")
        }
        let visual: VisualInput
        if f.exists("\(g)/visual_features") {
            visual = .features(try matrix("\(g)/visual_features"))
        } else if f.exists("\(g)/visual_embeddings") {
            visual = .embeddings(try matrix("\(g)/visual_embeddings"))
        } else {
            throw InputError(.badCase, file: path, object: g, "neither visual_features nor visual_embeddings")
        }
        let pos = try ints("\(g)/positions", rank: 2, max: 3 * PromptCase.maxSequenceLength)
        guard pos.shape[0] == 1 || pos.shape[0] == 3 else {
            throw InputError(.badCase, file: path, object: "\(g)/positions", "\(pos.shape[0]) axes, expected 1 or 3")
        }
        let n = pos.shape[1]
        let positions = PositionIDs(axes: (0..<pos.shape[0]).map { a in Array(pos.values[(a * n)..<((a + 1) * n)]) })
        let steps = try ints("\(g)/decode_steps", rank: 0).values[0]
        var side: VisionSideInputs?
        if f.exists("\(g)/vision_side") {
            let cls = try f.readFloats("\(g)/vision_side/cls_attention", maxElements: PromptCase.maxVisualElements)
            guard cls.shape.count == 1 else { throw InputError(.badCase, file: path, object: "\(g)/vision_side/cls_attention", "expected [N]") }
            var clsFeature: [Float]?
            if f.exists("\(g)/vision_side/cls_feature") {
                let v = try f.readFloats("\(g)/vision_side/cls_feature", maxElements: PromptCase.maxVisualElements)
                guard v.shape.count == 1 else { throw InputError(.badCase, file: path, object: "\(g)/vision_side/cls_feature", "expected [d_vision]") }
                clsFeature = v.values
            }
            side = VisionSideInputs(clsAttention: cls.values, similarityFeatures: try matrix("\(g)/vision_side/similarity_features"),
                                    clsFeature: clsFeature)
        }
        return PromptCase(name: name, prefixTokens: prefix, suffixTokens: suffix, visual: visual,
                          grid: grid.count == 2 ? ImageGrid(rows: grid[0], cols: grid[1]) : ImageGrid(rows: grid[1], cols: grid[2], frames: grid[0]),
                          positions: positions, decodeSteps: steps,
                          visionSide: side)
    }

    /// Writes a prompt case into `group`.
    public static func write(_ c: PromptCase, to w: HDF5Writer, group g: String = "/inputs") throws {
        try w.createGroup(g)
        try w.write("\(g)/prefix_ids", c.prefixTokens, shape: [c.prefixTokens.count])
        try w.write("\(g)/suffix_ids", c.suffixTokens, shape: [c.suffixTokens.count])
        try w.write("\(g)/grid", c.grid.shape, shape: [c.grid.shape.count])
        switch c.visual {
        case .features(let m): try w.write("\(g)/visual_features", m.values, shape: [m.rows, m.cols])
        case .embeddings(let m): try w.write("\(g)/visual_embeddings", m.values, shape: [m.rows, m.cols])
        }
        try w.write("\(g)/positions", c.positions.axes.flatMap { $0 }, shape: [c.positions.axisCount, c.positions.count])
        try w.write("\(g)/decode_steps", [c.decodeSteps], shape: [])
        if let side = c.visionSide {
            try w.write("\(g)/vision_side/cls_attention", side.clsAttention, shape: [side.clsAttention.count])
            try w.write("\(g)/vision_side/similarity_features", side.similarityFeatures.values,
                        shape: [side.similarityFeatures.rows, side.similarityFeatures.cols])
            if let cls = side.clsFeature { try w.write("\(g)/vision_side/cls_feature", cls, shape: [cls.count]) }
        }
    }
}
