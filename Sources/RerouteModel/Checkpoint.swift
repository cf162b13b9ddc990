import Foundation

/// The tensors of a Hugging Face model folder: `model.safetensors`, or shards listed by
/// `model.safetensors.index.json`, plus an optional `mm_projector.safetensors`.
///
/// Each tensor name resolves to exactly one file; a name in two files is an error.
public final class Checkpoint: Sendable {
    public let directory: URL
    public let files: [SafeTensorsFile]
    private let location: [String: SafeTensorsFile]

    /// All tensor names, sorted.
    public var tensorNames: [String] { location.keys.sorted() }

    public init(directory: URL) throws {
        self.directory = directory
        let fm = FileManager.default
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        let single = directory.appendingPathComponent("model.safetensors")
        var paths: [String] = []
        var expected: [String: String] = [:]  // tensor -> shard file name, from the index
        if fm.fileExists(atPath: index.path) {
            // A 72B model's index is about 100 KB.
            let data = try FilePaths.readSmall(index.path, maxBytes: 64 << 20, what: "a shard index")
            guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw InputError(.badJSON, file: index.path, "not a JSON object")
            }
            guard let map = obj["weight_map"] as? [String: Any] else {
                throw InputError(.badJSON, file: index.path, object: "weight_map", "missing or not an object")
            }
            for (tensor, v) in map {
                guard let shard = v as? String else { throw InputError(.badJSON, file: index.path, object: "weight_map.\(tensor)", "not a file name") }
                guard !shard.isEmpty, !shard.contains("/"), shard != "..", shard != "." else {
                    throw InputError(.badJSON, file: index.path, object: "weight_map.\(tensor)", "'\(shard)' is not a plain file name in the model folder")
                }
                expected[tensor] = shard
            }
            paths = Set(expected.values).sorted().map { directory.appendingPathComponent($0).path }
        } else if fm.fileExists(atPath: single.path) {
            paths = [single.path]
        } else {
            let pickles = ((try? fm.contentsOfDirectory(atPath: directory.path)) ?? []).filter { $0.hasSuffix(".bin") && $0.hasPrefix("pytorch_model") }.sorted()
            if !pickles.isEmpty {
                throw InputError(.unsupportedModel, file: directory.path, object: pickles[0],
                                 "PyTorch pickle weights (\(pickles.joined(separator: ", "))) are not read (loading a pickle runs code); "
                                 + "convert the folder to safetensors, e.g. save_pretrained(out, safe_serialization=True) or safetensors' convert script")
            }
            throw InputError(.fileNotFound, file: directory.path, "neither model.safetensors nor model.safetensors.index.json is here")
        }
        let projector = directory.appendingPathComponent("mm_projector.safetensors")
        if fm.fileExists(atPath: projector.path) { paths.append(projector.path) }

        var opened: [SafeTensorsFile] = []
        var loc: [String: SafeTensorsFile] = [:]
        for p in paths {
            let f = try SafeTensorsFile(path: p)
            opened.append(f)
            for name in f.tensors.keys {
                if let other = loc[name] {
                    throw InputError(.duplicateTensor, file: p, object: name, "also in \(other.path)")
                }
                loc[name] = f
            }
        }
        for (tensor, shard) in expected.sorted(by: { $0.key < $1.key }) {
            let shardPath = directory.appendingPathComponent(shard).path
            guard loc[tensor]?.path == shardPath else {
                throw InputError(.missingTensor, file: shardPath, object: tensor, "listed in model.safetensors.index.json but not in this shard")
            }
        }
        files = opened
        location = loc
    }

    public func has(_ name: String) -> Bool { location[name] != nil }

    /// The tensor-name convention of this checkpoint (`CheckpointLayout.detect`).
    public func layout() throws -> CheckpointLayout {
        try CheckpointLayout.detect(has, names: tensorNames, directory: directory.path)
    }

    /// Header entry of `name`; `missingTensor` names the folder when no file has it.
    public func info(_ name: String) throws -> TensorInfo {
        guard let f = location[name] else { throw InputError(.missingTensor, file: directory.path, object: name, "no checkpoint file has this tensor") }
        return try f.info(name)
    }

    /// Values of `name` widened to `Float`, after checking its shape.
    public func floats(_ name: String, shape: [Int]) throws -> [Float] {
        guard let f = location[name] else { throw InputError(.missingTensor, file: directory.path, object: name, "no checkpoint file has this tensor") }
        let t = try f.info(name)
        guard t.shape == shape else {
            throw InputError(.shapeMismatch, file: f.path, object: name, "shape \(t.shape), the config needs \(shape)")
        }
        let values = try f.floats(name)
        // The run would compute with it: NaN or ±Inf in a weight is refused here, named.
        if let i = values.firstIndex(where: { !$0.isFinite }) {
            throw InputError(.badValue, file: f.path, object: name, "element \(i) is \(values[i]); weights must be finite")
        }
        return values
    }

    /// The matrix `name` after checking its shape: widened to f32, or — with `.mappedBF16` and
    /// a BF16 tensor — a view into the mapped file (no copy).
    public func matrix(_ name: String, rows: Int, cols: Int, storage: WeightStorage) throws -> Matrix {
        if storage == .mappedBF16, let f = location[name] {
            let t = try f.info(name)
            guard t.shape == [rows, cols] else {
                throw InputError(.shapeMismatch, file: f.path, object: name, "shape \(t.shape), the config needs \([rows, cols])")
            }
            if let view = try f.mappedBF16(name) {
                // bf16 NaN and ±Inf have all exponent bits set: one pass over the mapped bits.
                if let i = view.firstNonFinite() {
                    throw InputError(.badValue, file: f.path, object: name, "element \(i) is \(view[i]); weights must be finite")
                }
                return Matrix(rows: rows, cols: cols, bf16: view)
            }
        }
        return Matrix(rows: rows, cols: cols, values: try floats(name, shape: [rows, cols]))
    }

    /// The file holding `name` (for error messages).
    public func file(of name: String) -> String? { location[name]?.path }
}
