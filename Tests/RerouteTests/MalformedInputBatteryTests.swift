import CHDF5
import Foundation
import RerouteFixtures
import RerouteHDF5
import RerouteModel
import RerouteRouting
import RerouteTrace
import RerouteVerify
import Testing

// The malformed-input battery: for every input format (safetensors, sharded index,
// config.json, prompt case, trace) truncations, flipped bytes, wrong dtypes, shapes that
// disagree with the config, absurd sizes, NaN/Inf, missing and extra objects and wrong schema
// versions must give the suite's own error (InputError / HDF5Error; exit code 2 in the CLI)
// naming the file and the object — never a crash, a hang or a huge allocation.
//
// Inputs that could take the process down (a trap found by this battery, or libhdf5 itself
// crashing on a corrupt file) are only ever loaded by the `reroute` binary in a child process,
// so a crash is a failed test here, not a dead test runner.

// MARK: - Shared pieces

/// A failure of the battery's own plumbing (not of the code under test).
struct BatteryPlumbingError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// One byte of a file XORed with a non-zero mask.
struct ByteFlip: Sendable, CustomStringConvertible {
    var offset: Int
    var mask: UInt8
    var description: String { "byte \(offset) ^ \(mask)" }
}

/// The input formats of the battery, each starting from a shipped file.
enum BatteryFormat: String, CaseIterable, Sendable {
    case safetensors, shardIndex, config, promptCase, trace

    var isJSON: Bool { self == .shardIndex || self == .config }
}

/// Element types the battery stores when it replaces a dataset.
enum StoredKind: String, Sendable {
    case f32, f64, i64, u8

    var fileType: hid_t {
        switch self {
        case .f32: chdf5_t_ieee_f32le()
        case .f64: chdf5_t_ieee_f64le()
        case .i64: chdf5_t_std_i64le()
        case .u8: chdf5_t_std_u8le()
        }
    }
}

/// An attribute edit made with the HDF5 C API; the target is `/@name` (root) or `/group@name`.
enum AttributeEdit: Sendable, CustomStringConvertible {
    case delete(String)
    case int(String, Int64)
    case double(String, Double)
    case string(String, String)

    var target: String {
        switch self {
        case .delete(let t), .int(let t, _), .double(let t, _), .string(let t, _): t
        }
    }

    var description: String {
        switch self {
        case .delete(let t): "delete \(t)"
        case .int(let t, let v): "\(t) = \(v)"
        case .double(let t, let v): "\(t) = \(v) (float)"
        case .string(let t, let v): "\(t) = \"\(v)\""
        }
    }

    /// Object path and attribute name.
    var location: (object: String, name: String) {
        let parts = target.split(separator: "@", maxSplits: 1).map(String.init)
        return (parts[0].isEmpty ? "/" : parts[0], parts.count > 1 ? parts[1] : "")
    }

    /// Replaces (or deletes) the attribute in an open file.
    func apply(to fid: hid_t) {
        let (object, name) = location
        if H5Aexists_by_name(fid, object, name, chdf5_p_default()) > 0 {
            H5Adelete_by_name(fid, object, name, chdf5_p_default())
        }
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        func create(_ type: hid_t, _ write: (hid_t) -> Void) {
            let a = H5Acreate_by_name(fid, object, name, type, space, chdf5_p_default(), chdf5_p_default(), chdf5_p_default())
            guard a >= 0 else { return }
            write(a)
            H5Aclose(a)
        }
        switch self {
        case .delete:
            break
        case .int(_, let v):
            var x = v
            create(chdf5_t_std_i64le()) { a in _ = H5Awrite(a, chdf5_t_native_int64(), &x) }
        case .double(_, let v):
            var x = v
            create(chdf5_t_ieee_f64le()) { a in _ = H5Awrite(a, chdf5_t_native_double(), &x) }
        case .string(_, let s):
            let t = H5Tcopy(chdf5_t_c_s1())
            defer { H5Tclose(t) }
            H5Tset_size(t, chdf5_t_variable())
            H5Tset_cset(t, H5T_CSET_UTF8)
            create(t) { a in
                s.withCString { c in
                    var p: UnsafePointer<CChar>? = c
                    _ = H5Awrite(a, t, &p)
                }
            }
        }
    }
}

/// What one run of the `reroute` binary did.
struct CLIOutcome: CustomStringConvertible {
    var status: Int32
    var signaled: Bool
    var timedOut: Bool
    var out: String
    var err: String

    /// Killed by a signal (a trap, a segfault, an allocation failure) or a hang.
    var crashed: Bool { signaled || timedOut }

    /// A clean refusal: exit code 2 and a `reroute: error:` line naming every string in `mentions`.
    func refuses(mentioning mentions: [String]) -> Bool {
        status == 2 && !crashed && err.contains("reroute: error:") && mentions.allSatisfy { err.contains($0) }
    }

    var description: String {
        let how = timedOut ? "timed out" : signaled ? "killed by signal \(status)" : "exit \(status)"
        return "\(how); stderr: \(err.prefix(800))"
    }
}

/// Shipped inputs and the tools to damage them.
enum Battery {
    static let tinyLlama = Repo.model("tiny-llama")
    static let tinyQwen2 = Repo.model("tiny-qwen2")
    /// The Qwen2 model's second shard (0.7 MB): f32 language-model and vision-tower tensors
    /// and the f16 LLaVA projector.
    static let projectorFile = tinyQwen2.appendingPathComponent("model-00002-of-00002.safetensors").path
    static let indexFile = tinyQwen2.appendingPathComponent("model.safetensors.index.json").path
    static let configFile = tinyLlama.appendingPathComponent("config.json").path
    /// 5 prefix tokens, 12×12 features of width 48, 7 suffix tokens (S = 156), 4 decode steps.
    static let caseFile = tinyLlama.appendingPathComponent("cases/features-12x12-contiguous.h5").path
    /// FastV on tiny-llama: L = 8, d = 64, V = 256, S = 108, one decision (100 candidates), 3 steps.
    static let traceFile = Repo.root.appendingPathComponent("golden/traces/tiny-llama/fastv.h5").path

    static func shippedFile(_ format: BatteryFormat) -> String {
        switch format {
        case .safetensors: projectorFile
        case .shardIndex: indexFile
        case .config: configFile
        case .promptCase: caseFile
        case .trace: traceFile
        }
    }

    /// The tiny LLaMA, loaded once (the config and projector cases are validated against).
    static let llama = Result { try ModelWeights.load(directory: tinyLlama) }
    /// The shipped case's inputs.
    static let shippedCase = Result { () throws -> PromptCase in
        let f = try HDF5File(readingFrom: caseFile)
        return try PromptCaseIO.read(f, name: "features-12x12-contiguous")
    }
    /// The shipped golden trace.
    static let goldenTrace = Result { try Trace.read(from: traceFile) }

    // MARK: bytes

    static func bytes(of path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) }

    static func fileSize(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }

    static func littleEndianUInt64(_ b: [UInt8], at i: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | (UInt64(b[i + $1]) << (8 * $1)) }
    }

    /// First offset of `needle` in `bytes`.
    static func offset(of needle: [UInt8], in bytes: [UInt8]) -> Int? {
        guard !needle.isEmpty, bytes.count >= needle.count else { return nil }
        outer: for i in 0...(bytes.count - needle.count) {
            for j in 0..<needle.count where bytes[i + j] != needle[j] { continue outer }
            return i
        }
        return nil
    }

    /// Prefix lengths to cut a file at: the first bytes (0, 1, 7, 8, 9, 100), 32 offsets spread
    /// evenly, and size − 1; all below `size`.
    static func cutOffsets(size: Int) -> [Int] {
        var cuts: Set<Int> = [0, 1, 7, 8, 9, 100, size - 1]
        for k in 1...32 { cuts.insert(size * k / 33) }
        return cuts.filter { $0 >= 0 && $0 < size }.sorted()
    }

    /// Deterministic flips: even-numbered ones in the first `head` bytes (headers, superblock,
    /// object headers and heaps), odd-numbered ones anywhere in the file.
    static func byteFlips(count: Int, size: Int, head: Int, seed: UInt64) -> [ByteFlip] {
        guard size > 0 else { return [] }
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { i in
            let limit = max(1, i % 2 == 0 ? min(size, head) : size)
            let offset = rng.integer(below: limit)
            let mask = UInt8(1 + rng.integer(below: 255))
            return ByteFlip(offset: offset, mask: mask)
        }
    }

    /// The flips used for each format. The case and trace ones were replayed beforehand with the
    /// `reroute` binary and h5dump: none of them crashes libhdf5 (the one that does is tested
    /// on its own, in a child process).
    static func flips(for format: BatteryFormat, original: [UInt8]) -> [ByteFlip] {
        switch format {
        case .safetensors:
            byteFlips(count: 50, size: original.count, head: 8 + Int(littleEndianUInt64(original, at: 0)), seed: 0x5AFE)
        case .shardIndex: byteFlips(count: 50, size: original.count, head: original.count, seed: 0x1DE4)
        case .config: byteFlips(count: 50, size: original.count, head: original.count, seed: 0xC0F1)
        case .promptCase: byteFlips(count: 48, size: original.count, head: 8192, seed: 0xCA5E)
        case .trace: byteFlips(count: 24, size: original.count, head: 8192, seed: 0x7EACE)
        }
    }

    static let traceFlips: [ByteFlip] = byteFlips(count: 24, size: fileSize(traceFile), head: 8192, seed: 0x7EACE)

    // MARK: errors

    /// The error `body` throws, nil if none.
    static func caught(_ body: () throws -> Void) -> (any Error)? {
        do { try body() } catch { return error }
        return nil
    }

    /// The suite's own error type, with a message that names `path` (a file, or a folder whose
    /// files the error may name).
    static func isClean(_ error: any Error, naming path: String) -> Bool {
        (error is InputError || error is HDF5Error) && "\(error)".contains(path)
    }

    /// The object an InputError or HDF5Error names.
    static func object(of error: any Error) -> String? {
        (error as? InputError)?.object ?? (error as? HDF5Error)?.object
    }

    // MARK: model folders and JSON

    /// Copies a model folder (without its cases) to `destination`.
    static func copyModel(_ source: URL, to destination: URL) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: destination, withIntermediateDirectories: true)
        for f in try fm.contentsOfDirectory(atPath: source.path) where f != "cases" {
            try fm.copyItem(at: source.appendingPathComponent(f), to: destination.appendingPathComponent(f))
        }
    }

    static func jsonValue(_ text: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
    }

    /// Rewrites a JSON object file.
    static func editJSON(_ path: String, _ edit: (inout [String: Any]) throws -> Void) throws {
        guard var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any] else {
            throw BatteryPlumbingError("\(path) is not a JSON object")
        }
        try edit(&obj)
        try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: path))
    }

    /// Edits the language model's keys of a config: `text_config` when there is one (LLaVA,
    /// transformers 5 Qwen2.5-VL), else the top level.
    static func editTextConfig(_ path: String, _ edit: (inout [String: Any]) throws -> Void) throws {
        try editJSON(path) { obj in
            guard var text = obj["text_config"] as? [String: Any] else { return try edit(&obj) }
            try edit(&text)
            obj["text_config"] = text
        }
    }

    /// Rewrites the JSON header of a safetensors file; the data section is kept (offsets are
    /// relative to it) and `extraData` appended. `edit` gets the header and the data size.
    static func editSafeTensorsHeader(_ path: String, extraData: [UInt8] = [],
                                      _ edit: (inout [String: Any], Int) throws -> Void) throws {
        let b = try bytes(of: path)
        let n = Int(littleEndianUInt64(b, at: 0))
        guard var header = try JSONSerialization.jsonObject(with: Data(b[8..<(8 + n)])) as? [String: Any] else {
            throw BatteryPlumbingError("\(path): header is not a JSON object")
        }
        let data = Array(b[(8 + n)...])
        try edit(&header, data.count)
        let json = String(decoding: try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]), as: UTF8.self)
        try SafeTensorsBuilder.file(header: json, data: data + extraData).write(to: path)
    }

    /// Reads every tensor of a safetensors file, checking that each lies inside the file.
    static func readEveryTensor(_ path: String) throws {
        let f = try SafeTensorsFile(path: path)
        let b = try bytes(of: path)
        let dataStart = 8 + Int(littleEndianUInt64(b, at: 0))
        for name in f.tensors.keys.sorted() {
            let t = try f.info(name)
            #expect(t.dataRange.lowerBound >= 0 && dataStart + t.dataRange.upperBound <= b.count,
                    "\(path): \(name) at \(t.dataRange) is outside the \(b.count)-byte file")
            #expect(t.dataRange.count == t.elementCount * t.dtype.size, "\(path): \(name)")
            if t.dtype.convertsToFloat {
                #expect(try f.floats(name).count == t.elementCount)
            }
        }
    }

    // MARK: HDF5

    /// Copies `source` into `dir` as `name` and edits the copy in place with the HDF5 C API.
    static func editedCopy(of source: String, in dir: TempDir, named name: String, _ edit: (hid_t) -> Void) throws -> String {
        let path = dir.path(name)
        try FileManager.default.copyItem(atPath: source, toPath: path)
        H5Eset_auto2(chdf5_e_default(), nil, nil)
        let fid = H5Fopen(path, chdf5_acc_rdwr(), chdf5_p_default())
        guard fid >= 0 else { throw BatteryPlumbingError("cannot open \(path) for editing") }
        edit(fid)
        guard H5Fclose(fid) >= 0 else { throw BatteryPlumbingError("cannot close \(path)") }
        return path
    }

    /// Replaces a dataset by one of another type or shape, filled with zeros.
    static func replaceDataset(_ fid: hid_t, _ path: String, _ kind: StoredKind, _ dims: [Int]) {
        H5Ldelete(fid, path, chdf5_p_default())
        var d = dims.map { hsize_t($0) }
        let space = dims.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(d.count), &d, nil)
        defer { H5Sclose(space) }
        let ds = H5Dcreate2(fid, path, kind.fileType, space, chdf5_p_default(), chdf5_p_default(), chdf5_p_default())
        guard ds >= 0 else { return }
        defer { H5Dclose(ds) }
        let zeros = [UInt8](repeating: 0, count: dims.reduce(1, *) * H5Tget_size(kind.fileType))
        if !zeros.isEmpty {
            zeros.withUnsafeBytes { _ = H5Dwrite(ds, kind.fileType, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), $0.baseAddress) }
        }
    }

    /// Replaces a dataset by a chunked 1-D one declaring `elements` elements, none written:
    /// the file stays small whatever the declared size. Returns whether HDF5 created it.
    @discardableResult
    static func declareChunked(_ fid: hid_t, _ path: String, elements: UInt64, _ kind: StoredKind) -> Bool {
        H5Ldelete(fid, path, chdf5_p_default())
        var dims: [hsize_t] = [elements]
        var chunk: [hsize_t] = [1 << 16]
        let space = H5Screate_simple(1, &dims, nil)
        defer { H5Sclose(space) }
        let dcpl = H5Pcreate(chdf5_p_dataset_create())
        defer { H5Pclose(dcpl) }
        H5Pset_chunk(dcpl, 1, &chunk)
        let ds = H5Dcreate2(fid, path, kind.fileType, space, chdf5_p_default(), dcpl, chdf5_p_default())
        guard ds >= 0 else { return false }
        H5Dclose(ds)
        return true
    }

    /// Creates a small int64 dataset (and its groups).
    static func addDataset(_ fid: hid_t, _ path: String) {
        var prefix = ""
        for part in path.split(separator: "/").dropLast() {
            prefix += "/" + part
            if H5Lexists(fid, prefix, chdf5_p_default()) <= 0 {
                let g = H5Gcreate2(fid, prefix, chdf5_p_default(), chdf5_p_default(), chdf5_p_default())
                if g >= 0 { H5Gclose(g) }
            }
        }
        replaceDataset(fid, path, .i64, [3])
    }

    /// Writes a prompt case file (`/@case` and `/inputs`), as `reroute run` reads it.
    static func writeCase(_ c: PromptCase, to path: String) throws {
        let w = try HDF5Writer(creating: path)
        try w.setAttribute("case", c.name)
        try PromptCaseIO.write(c, to: w)
        try w.commit()
    }

    /// Reads a case file's `/inputs` and validates it against the tiny LLaMA, as `reroute run` does.
    static func loadCaseForLlama(_ path: String) throws {
        let weights = try llama.get()
        let f = try HDF5File(readingFrom: path)
        let c = try PromptCaseIO.read(f, name: "damaged")
        try c.validate(for: weights.config, projector: weights.projector, file: path)
    }

    /// The golden trace after `edit`, written to `dir`.
    static func damagedTrace(in dir: TempDir, named name: String, _ edit: (inout Trace) throws -> Void) throws -> String {
        var t = try goldenTrace.get()
        try edit(&t)
        let path = dir.path(name)
        try t.write(to: path)
        return path
    }

    /// The shipped case's features matrix.
    static func features(of c: PromptCase) throws -> Matrix {
        guard case .features(let m) = c.visual else { throw BatteryPlumbingError("the shipped case has no visual_features") }
        return m
    }

    // MARK: process

    /// Resets this process's peak resident memory (VmHWM) to its current resident memory
    /// (Linux ≥ 4.0), so a later `peakResidentKiB` measures one window.
    static func resetPeakResident() {
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
    }

    /// Peak resident memory of this process (VmHWM), in KiB.
    static func peakResidentKiB() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.count >= 2 { return Int(fields[1]) }
        }
        return nil
    }

    /// Runs the `reroute` binary in a child process (cwd: the repository); a run that outlives
    /// `timeout` is killed and reported as a hang.
    static func runCLI(_ args: [String], timeout: TimeInterval = 120) throws -> CLIOutcome {
        let o = try Subprocess.run(args, deadline: timeout)
        return CLIOutcome(status: o.status, signaled: o.signaled, timedOut: o.timedOut, out: o.out, err: o.err)
    }
}

/// A scratch folder for damaged copies of one format's shipped file, loaded the way the suite
/// loads that format.
final class DamageBench {
    let format: BatteryFormat
    let dir: TempDir
    /// For `.shardIndex`: a copy of tiny-qwen2's folder (two shards and a projector) whose
    /// index is replaced.
    let modelFolder: URL

    init(_ format: BatteryFormat) throws {
        self.format = format
        dir = try TempDir()
        modelFolder = dir.url.appendingPathComponent("tiny-qwen2")
        if format == .shardIndex { try Battery.copyModel(Battery.tinyQwen2, to: modelFolder) }
    }

    deinit { dir.cleanup() }

    /// Writes `bytes` and loads them. Returns the file written, the path an error must name
    /// (the model folder for an index, whose errors may name a shard in it) and the error
    /// (nil: it loaded completely).
    func load(_ bytes: [UInt8], tag: String) throws -> (path: String, scope: String, error: (any Error)?) {
        switch format {
        case .safetensors:
            let path = dir.path("\(tag).safetensors")
            try bytes.write(to: path)
            return (path, path, Battery.caught { try Battery.readEveryTensor(path) })
        case .shardIndex:
            let path = modelFolder.appendingPathComponent("model.safetensors.index.json").path
            try bytes.write(to: path)
            let folder = modelFolder
            return (path, folder.path, Battery.caught {
                let c = try Checkpoint(directory: folder)
                #expect(!c.tensorNames.isEmpty)
            })
        case .config:
            let path = dir.path("\(tag)-config.json")
            try bytes.write(to: path)
            return (path, path, Battery.caught { _ = try ModelConfig.load(from: URL(fileURLWithPath: path)) })
        case .promptCase:
            let path = dir.path("\(tag).h5")
            try bytes.write(to: path)
            let weights = try Battery.llama.get()
            return (path, path, Battery.caught {
                let c = try HFReferenceCase.load(path: path)
                try c.promptCase.validate(for: weights.config, projector: weights.projector, file: path)
            })
        case .trace:
            let path = dir.path("\(tag).h5")
            try bytes.write(to: path)
            return (path, path, Battery.caught { _ = try Trace.read(from: path) })
        }
    }
}

// MARK: - The battery

@Suite struct MalformedInputBatteryTests {

    // MARK: truncation and flipped bytes

    @Suite struct TruncationAndByteFlips {
        /// Every format's shipped file cut at ~39 offsets (0, 1, 7, 8, 9, 100, 32 spread over the
        /// file, size − 1; for JSON, every cut before the closing brace) is refused by its loader
        /// with an InputError or HDF5Error whose message names the cut file: never loaded, never
        /// a crash.
        @Test(arguments: BatteryFormat.allCases)
        func truncationAtManyOffsetsIsANamedError(format: BatteryFormat) throws {
            let bench = try DamageBench(format)
            let original = try Battery.bytes(of: Battery.shippedFile(format))
            // A JSON prefix is only invalid while it lacks the closing brace (later cuts drop whitespace).
            let meaningful = format.isJSON ? (original.lastIndex(of: UInt8(ascii: "}")) ?? 0) + 1 : original.count
            let cuts = Battery.cutOffsets(size: meaningful)
            #expect(cuts.count >= 35)
            for cut in cuts {
                let (path, _, error) = try bench.load(Array(original.prefix(cut)), tag: "cut\(cut)")
                guard let error else {
                    Issue.record("\(format): the file cut to \(cut) of \(original.count) bytes loaded without an error")
                    continue
                }
                #expect(Battery.isClean(error, naming: path), "\(format) cut to \(cut) bytes: \(error)")
            }
        }

        /// ~50 single-byte flips at fixed-seed positions (half of them in the headers) per
        /// format: each flipped file either loads completely (safetensors: every tensor's range
        /// inside the file and readable; prompt case: also validated against the model) or is
        /// refused with a named error — never a crash or a read outside the file. Some flips must
        /// be refused (they reach the headers). HDF5 traces: `traceByteFlipsNeverCrashTheCLI`.
        @Test(arguments: [BatteryFormat.safetensors, .shardIndex, .config, .promptCase])
        func byteFlipsGiveANamedErrorOrACompleteLoad(format: BatteryFormat) throws {
            let bench = try DamageBench(format)
            let original = try Battery.bytes(of: Battery.shippedFile(format))
            let flips = Battery.flips(for: format, original: original)
            #expect(flips.count >= 48)
            var refused = 0
            for (k, flip) in flips.enumerated() {
                var damaged = original
                damaged[flip.offset] ^= flip.mask
                let (_, scope, error) = try bench.load(damaged, tag: "flip\(k)")
                if let error {
                    refused += 1
                    #expect(Battery.isClean(error, naming: scope), "\(format) \(flip): \(error)")
                }
            }
            #expect(refused > 0, "\(format): no flip was refused; do they reach the headers?")
        }

        /// Byte flips in a golden trace, each read by `reroute show` in a child process: exit 0
        /// (the flip hit data that still validates) or exit 2 naming the file — never a signal or
        /// a hang. A child process because libhdf5 itself can crash on a corrupt file (see
        /// `corruptStringHeapObjectIsARefusalNotASegfault`).
        @Test(arguments: Battery.traceFlips)
        func traceByteFlipsNeverCrashTheCLI(flip: ByteFlip) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            var bytes = try Battery.bytes(of: Battery.traceFile)
            try #require(flip.offset < bytes.count)
            bytes[flip.offset] ^= flip.mask
            let path = dir.path("flipped.h5")
            try bytes.write(to: path)
            let r = try Battery.runCLI(["show", path])
            #expect(!r.crashed, "\(flip): \(r)")
            #expect(r.status == 0 || r.refuses(mentioning: [path]), "\(flip): \(r)")
        }

        /// The size field of a variable-length string's global-heap object made absurd (its top
        /// byte flipped): the trace's `/@schema` and `/@model_config`, the case's `/@case` (read by
        /// `reroute run`). Found by this battery: libhdf5 1.10.8 copies that many bytes and
        /// segfaults inside `H5Aread` (HDF5File.stringAttribute), as h5dump does. Must be exit 2
        /// naming the file, and no trace written.
        @Test(arguments: [("trace", "reroute.trace"), ("trace", "{\"attentionBias\""), ("case", "features-12x12-contiguous")])
        func corruptStringHeapObjectIsARefusalNotASegfault(input: String, needle: String) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let source = input == "trace" ? Battery.traceFile : Battery.caseFile
            var bytes = try Battery.bytes(of: source)
            let at = try #require(Battery.offset(of: Array(needle.utf8), in: bytes), "'\(needle)' is not in \(source)")
            try #require(at >= 16)
            let size = Battery.littleEndianUInt64(bytes, at: at - 8)
            try #require(size >= UInt64(needle.utf8.count) && size < 1 << 20, "no global-heap object size before '\(needle)'")
            bytes[at - 1] ^= 0xFA  // the top byte of the object's 64-bit size
            let path = dir.path("corrupt.h5")
            try bytes.write(to: path)
            let out = dir.path("out.h5")
            let args = input == "trace"
                ? ["show", path]
                : ["run", "--model", Battery.tinyLlama.path, "--case", path, "--policy", "dense", "--decoder", "fast", "--out", out]
            let r = try Battery.runCLI(args)
            #expect(r.refuses(mentioning: [path]), "\(r)")
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }

    // MARK: safetensors headers

    /// Header damage SafeTensorsTests does not cover: each error names the file and the tensor.
    @Suite struct SafeTensorsHeaders {
        static let entryErrors: [(String, InputError.Kind, String)] = [
            (#"{"w":{"shape":[1],"data_offsets":[0,4]}}"#, .badHeader, "w"),                                   // no dtype
            (#"{"w":{"dtype":"F32","data_offsets":[0,4]}}"#, .badHeader, "w"),                                 // no shape
            (#"{"w":{"dtype":"F32","shape":[1]}}"#, .badHeader, "w"),                                          // no offsets
            (#"{"w":5}"#, .badHeader, "w"),                                                                    // not an object
            (#"{"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}"#, .badHeader, "w"),                         // dtype not a string
            (#"{"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}"#, .unsupportedDType, "w"),              // dtypes are case-sensitive
            (#"{"w":{"dtype":"F32","shape":1,"data_offsets":[0,4]}}"#, .badHeader, "w"),                       // shape not a list
            (#"{"w":{"dtype":"F32","shape":[[1]],"data_offsets":[0,4]}}"#, .badShape, "w"),                    // nested shape
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}}"#, .badHeader, "w"),                       // one offset
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}"#, .badHeader, "w"),                   // three offsets
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}"#, .badHeader, "w"),                    // negative
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}"#, .badHeader, "w"),                     // reversed
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":["0","4"]}}"#, .badHeader, "w"),                 // strings
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0.5,4.5]}}"#, .badHeader, "w"),                 // fractional
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,1e19]}}"#, .badHeader, "w"),                  // beyond Int
            (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,9223372036854775807]}}"#, .badHeader, "w"),   // Int.max
            (#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}"#, .outOfRange, "w"),                  // past the data
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
             .overlap, "b"),                                                                                   // duplicate range
            (#"{"big":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"small":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
             .overlap, "small"),                                                                               // nested range
            (#"{"__metadata__":5}"#, .badHeader, "__metadata__"),
            (#"{"__metadata__":{"k":5}}"#, .badHeader, "__metadata__.k"),
        ]

        /// Malformed tensor entries (missing or mistyped dtype, shape or offsets; negative,
        /// reversed, fractional or overflowing offsets; duplicate and nested byte ranges; bad
        /// metadata): the specific error kind, naming the file and the entry.
        @Test(arguments: MalformedInputBatteryTests.SafeTensorsHeaders.entryErrors)
        func malformedEntryIsNamed(header: String, kind: InputError.Kind, object: String) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = dir.path("t.safetensors")
            try SafeTensorsBuilder.file(header: header, data: [UInt8](repeating: 0, count: 16)).write(to: path)
            let e = try #require(inputError { _ = try SafeTensorsFile(path: path) }, "accepted: \(header)")
            #expect(e.kind == kind, "\(e)")
            #expect(e.file == path && e.object == object, "\(e)")
            #expect(e.description.contains(path) && e.description.contains(object))
        }

        static let absurdShapes: [(String, String)] = [
            ("F64", "[1000000,1000000000]"),    // 10^15 elements
            ("F32", "[1e15]"),                  // 10^15 written as a float
            ("BF16", "[1000,1000,1000000000]"), // 10^15 over three axes
            ("F32", "[4611686018427387904]"),   // 2^62 elements: the byte count overflows
            ("U8", "[3037000500,3037000500]"),  // the element count just overflows Int
        ]

        /// A declared tensor of 10^15 elements (or one whose element or byte count overflows)
        /// with a 4-byte range is refused from the header alone (`badShape`, naming file and
        /// tensor), in well under a second: nothing is allocated for it.
        @Test(arguments: MalformedInputBatteryTests.SafeTensorsHeaders.absurdShapes)
        func absurdDeclaredSizeIsRefusedBeforeAllocating(dtype: String, shape: String) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = dir.path("huge.safetensors")
            let header = "{\"w\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":[0,4]}}"
            try SafeTensorsBuilder.file(header: header, data: [0, 0, 0, 0]).write(to: path)
            let start = ContinuousClock.now
            let e = try #require(inputError { _ = try SafeTensorsFile(path: path) })
            #expect(ContinuousClock.now - start < .seconds(5))
            #expect(e.kind == .badShape && e.file == path && e.object == "w", "\(e)")
        }

        /// Damage to the file as a whole: a header length of 2^64 − 1 (`badHeader`, no Int
        /// conversion trap), a zero-length header, a header of invalid UTF-8, and JSON `null`
        /// (`badJSON`); each names the file.
        @Test func fileLevelHeaderDamageIsNamed() throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let data = [UInt8](repeating: 0, count: 16)
            func length(_ n: UInt64) -> [UInt8] { withUnsafeBytes(of: n.littleEndian, Array.init) }
            let cases: [(String, [UInt8], InputError.Kind)] = [
                ("max-length", length(UInt64.max) + Array("{}".utf8) + data, .badHeader),
                ("empty-header", length(0) + data, .badJSON),
                ("not-utf8", length(4) + [0x7B, 0xFF, 0xFE, 0x7D] + data, .badJSON),
                ("null", length(4) + Array("null".utf8) + data, .badJSON),
            ]
            for (name, bytes, kind) in cases {
                let path = dir.path("\(name).safetensors")
                try bytes.write(to: path)
                let e = inputError { _ = try SafeTensorsFile(path: path) }
                #expect(e?.kind == kind && e?.file == path, "\(name): \(String(describing: e))")
            }
        }

        /// What the reader accepts by design (SPEC.md §3 lists what it refuses; these are not
        /// on the list): zero-size tensors at one offset (empty ranges overlap nothing), an empty
        /// tensor whose other axis is 10^18 (no elements), bytes after the last tensor, an empty
        /// header.
        @Test func benignOdditiesAreAccepted() throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let cases: [(String, [UInt8], Int)] = [
                (#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"b":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#, [], 2),
                (#"{"w":{"dtype":"U8","shape":[0,1000000000000000000],"data_offsets":[0,0]}}"#, [], 1),
                (#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, [UInt8](repeating: 0, count: 16), 1),
                ("{}", [], 0),
            ]
            for (k, (header, data, count)) in cases.enumerated() {
                let path = dir.path("ok\(k).safetensors")
                try SafeTensorsBuilder.file(header: header, data: data).write(to: path)
                let f = try SafeTensorsFile(path: path)
                #expect(f.tensors.count == count, "\(header)")
                for t in f.tensors.values { #expect(t.dataRange.upperBound <= data.count) }
            }
        }
    }

    // MARK: checkpoints and config.json

    @Suite struct CheckpointsAndConfigs {
        static let configChanges: [(String, String, InputError.Kind, String)] = [
            ("hidden_size", "128", .shapeMismatch, "language_model.model.layers.0.input_layernorm.weight"),
            ("num_attention_heads", "8", .shapeMismatch, "language_model.model.layers.0.self_attn.q_proj.weight"),
            ("head_dim", "8", .shapeMismatch, "language_model.model.layers.0.self_attn.q_proj.weight"),
            ("num_key_value_heads", "2", .shapeMismatch, "language_model.model.layers.0.self_attn.k_proj.weight"),
            ("vocab_size", "300", .shapeMismatch, "language_model.model.embed_tokens.weight"),
            ("num_hidden_layers", "9", .missingTensor, "language_model.model.layers.8.input_layernorm.weight"),
            ("num_hidden_layers", "7", .shapeMismatch, "language_model.model.layers.7.input_layernorm.weight"),
            ("attention_bias", "true", .missingTensor, "language_model.model.layers.0.self_attn.q_proj.bias"),
        ]

        /// A tiny-llama folder (LLaVA: the keys under text_config) whose config.json disagrees with its weights (wider hidden size,
        /// more heads, other head width or KV heads, larger vocabulary, one layer more or fewer,
        /// attention bias): ModelWeights.load names the first tensor that does not fit, in a file
        /// of the folder.
        @Test(arguments: MalformedInputBatteryTests.CheckpointsAndConfigs.configChanges)
        func weightsThatDisagreeWithTheConfigAreNamed(key: String, json: String, kind: InputError.Kind, object: String) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            try Battery.copyModel(Battery.tinyLlama, to: dir.url)
            let value = try Battery.jsonValue(json)
            try Battery.editTextConfig(dir.path("config.json")) { $0[key] = value }
            let e = try #require(inputError { _ = try ModelWeights.load(directory: dir.url) }, "\(key) = \(json) was accepted")
            #expect(e.kind == kind && e.object == object, "\(e)")
            #expect(e.file.hasPrefix(dir.url.path) && e.description.contains(object), "\(e)")
        }

        static let headerEdits: [(String, String, String, InputError.Kind)] = [
            ("language_model.model.layers.2.self_attn.v_proj.weight", "dtype", #""I16""#, .unsupportedDType),  // same size, not a float
            ("language_model.model.embed_tokens.weight", "dtype", #""U16""#, .unsupportedDType),
            ("language_model.model.layers.2.self_attn.v_proj.weight", "dtype", #""F32""#, .badShape),          // twice the bytes of the range
            ("language_model.model.layers.5.mlp.gate_proj.weight", "shape", "[64, 172]", .shapeMismatch),     // transposed
            ("language_model.model.layers.5.mlp.gate_proj.weight", "shape", "[172, 64, 1]", .shapeMismatch),  // an extra axis
            ("language_model.model.norm.weight", "shape", "[32, 2]", .shapeMismatch),
        ]

        /// Wrong dtypes and shapes in tiny-llama's weights (the header rewritten, the bytes kept):
        /// a non-float dtype of the same size, a dtype whose size disagrees with the byte range, a
        /// transposed or reshaped matrix. The error names model.safetensors and the tensor.
        @Test(arguments: MalformedInputBatteryTests.CheckpointsAndConfigs.headerEdits)
        func wrongDTypeOrShapeInTheWeightsIsNamed(tensor: String, field: String, json: String, kind: InputError.Kind) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            try Battery.copyModel(Battery.tinyLlama, to: dir.url)
            let weights = dir.path("model.safetensors")
            let value = try Battery.jsonValue(json)
            try Battery.editSafeTensorsHeader(weights) { header, _ in
                guard var entry = header[tensor] as? [String: Any] else { throw BatteryPlumbingError("no \(tensor)") }
                entry[field] = value
                header[tensor] = entry
            }
            let e = try #require(inputError { _ = try ModelWeights.load(directory: dir.url) }, "\(tensor).\(field) = \(json) was accepted")
            #expect(e.kind == kind && e.object == tensor && e.file == weights, "\(e)")
        }

        static let extraTensors: [(String, [Int], InputError.Kind?)] = [
            ("model.vision_tower.patch_embed.weight", [4], nil),               // an unknown name: ignored
            ("language_model.model.layers.3.self_attn.k_proj.bias", [64], .shapeMismatch),   // a bias the config does not declare
            ("language_model.model.layers.8.input_layernorm.weight", [64], .shapeMismatch),  // a layer beyond num_hidden_layers
            ("language_model.model.layers.8.mlp.up_proj.weight", [172, 64], .shapeMismatch), // the same, without its norm
        ]

        /// Extra tensors in tiny-llama's weights (SPEC.md §3): a name the loader does not know is
        /// ignored; an attention bias the config does not declare and any tensor of a layer beyond
        /// num_hidden_layers are refused naming the tensor (the loader checks every layer index, not
        /// only `layers.L.input_layernorm.weight`).
        @Test(arguments: MalformedInputBatteryTests.CheckpointsAndConfigs.extraTensors)
        func extraTensorsAreIgnoredOrRefusedAsDocumented(name: String, shape: [Int], kind: InputError.Kind?) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            try Battery.copyModel(Battery.tinyLlama, to: dir.url)
            let weights = dir.path("model.safetensors")
            let bytes = 4 * shape.reduce(1, *)
            try Battery.editSafeTensorsHeader(weights, extraData: [UInt8](repeating: 0, count: bytes)) { header, dataSize in
                header[name] = ["dtype": "F32", "shape": shape, "data_offsets": [dataSize, dataSize + bytes]] as [String: Any]
            }
            let e = inputError { _ = try ModelWeights.load(directory: dir.url) }
            if let kind {
                #expect(e?.kind == kind && e?.object == name && e?.file == weights, "\(String(describing: e))")
            } else {
                #expect(e == nil, "\(String(describing: e))")
                #expect(try Checkpoint(directory: dir.url).has(name))
            }
        }

        /// Sharded-index damage in a copy of tiny-qwen2 (two shards): a shard that does not exist,
        /// a listed tensor no shard has, a tensor in two shards, a weight_map that is not an
        /// object, a shard name that is not a string or not a plain file name, a top level that is
        /// not an object. Each is the named InputError (file and, where there is one, tensor or key).
        @Test(arguments: ["missingShard", "tensorNotInItsShard", "tensorInTwoShards", "weightMapNotAnObject",
                          "shardNotAString", "absolutePath", "parentFolder", "topLevelArray"])
        func shardIndexDamageIsNamed(damage: String) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            try Battery.copyModel(Battery.tinyQwen2, to: dir.url)
            let index = dir.path("model.safetensors.index.json")
            let shard1 = dir.path("model-00001-of-00002.safetensors"), shard2 = dir.path("model-00002-of-00002.safetensors")
            func mapEntry(_ tensor: String, _ value: Any) throws {
                try Battery.editJSON(index) { obj in
                    var map = obj["weight_map"] as? [String: Any] ?? [:]
                    map[tensor] = value
                    obj["weight_map"] = map
                }
            }
            let expected: (kind: InputError.Kind, file: String, object: String?)
            switch damage {
            case "missingShard":
                try mapEntry("model.language_model.norm.weight", "model-00003-of-00003.safetensors")
                expected = (.fileNotFound, dir.path("model-00003-of-00003.safetensors"), nil)
            case "tensorNotInItsShard":
                try mapEntry("model.layers.0.mlp.bogus_proj.weight", "model-00001-of-00002.safetensors")
                expected = (.missingTensor, shard1, "model.layers.0.mlp.bogus_proj.weight")
            case "tensorInTwoShards":
                // model.language_model.norm.weight lives in shard 2; give shard 1 a copy too.
                try Battery.editSafeTensorsHeader(shard1, extraData: [UInt8](repeating: 0, count: 256)) { header, dataSize in
                    header["model.language_model.norm.weight"] = ["dtype": "F32", "shape": [64], "data_offsets": [dataSize, dataSize + 256]] as [String: Any]
                }
                expected = (.duplicateTensor, shard2, "model.language_model.norm.weight")
            case "weightMapNotAnObject":
                try Battery.editJSON(index) { $0["weight_map"] = ["model-00001-of-00002.safetensors"] }
                expected = (.badJSON, index, "weight_map")
            case "shardNotAString":
                try mapEntry("model.language_model.norm.weight", 2)
                expected = (.badJSON, index, "weight_map.model.language_model.norm.weight")
            case "absolutePath":
                try mapEntry("model.language_model.norm.weight", "/etc/hostname")
                expected = (.badJSON, index, "weight_map.model.language_model.norm.weight")
            case "parentFolder":
                try mapEntry("model.language_model.norm.weight", "..")
                expected = (.badJSON, index, "weight_map.model.language_model.norm.weight")
            default:
                try Array("[]".utf8).write(to: index)
                expected = (.badJSON, index, nil)
            }
            let e = try #require(inputError { _ = try Checkpoint(directory: dir.url) }, "\(damage) was accepted")
            #expect(e.kind == expected.kind && e.file == expected.file && e.object == expected.object, "\(damage): \(e)")
        }

        static let configFields: [(String, String, InputError.Kind, String)] = [
            // Wrong types.
            ("hidden_size", #""64""#, .badConfig, "text_config.hidden_size"),
            ("hidden_size", "64.5", .badConfig, "text_config.hidden_size"),
            ("num_hidden_layers", "null", .badConfig, "text_config.num_hidden_layers"),
            ("num_attention_heads", "[4]", .badConfig, "text_config.num_attention_heads"),
            ("num_attention_heads", "1e300", .badConfig, "text_config.num_attention_heads"),
            ("rms_norm_eps", #""1e-5""#, .badConfig, "text_config.rms_norm_eps"),
            ("tie_word_embeddings", #""false""#, .badConfig, "text_config.tie_word_embeddings"),
            ("hidden_act", "7", .badConfig, "text_config.hidden_act"),
            ("model_type", "5", .badConfig, "model_type"),
            ("rope_parameters", #"{"rope_theta": "big"}"#, .badConfig, "text_config.rope_parameters.rope_theta"),
            // Values the decoder cannot run.
            ("num_key_value_heads", "0", .badConfig, "text_config.num_key_value_heads"),
            ("rms_norm_eps", "-1", .badConfig, "text_config.rms_norm_eps"),
            ("hidden_act", #""gelu""#, .badConfig, "text_config.hidden_act"),
            ("mlp_bias", "true", .badConfig, "text_config.mlp_bias"),
            ("model_type", #""mistral""#, .unsupportedModel, "model_type"),
            ("rope_parameters", #"{"rope_theta": 10000.0, "rope_type": "yarn"}"#, .badConfig, "text_config.rope_parameters.rope_type"),
            ("rope_parameters", #"{"rope_theta": 0.5}"#, .badConfig, "text_config.rope_theta"),
            ("vocab_size", "-1", .badConfig, "text_config.vocab_size"),
            // Absurd sizes: refused by the caps, before any weight is read or allocated.
            ("vocab_size", "1000000000000", .badConfig, "text_config.vocab_size"),
            ("hidden_size", "1048576", .badConfig, "text_config.hidden_size"),
            ("num_hidden_layers", "100000", .badConfig, "text_config.num_hidden_layers"),
            ("intermediate_size", "1e12", .badConfig, "text_config.intermediate_size"),
            ("head_dim", "100000", .badConfig, "text_config.head_dim"),
        ]

        /// config.json fields (of tiny-llama's LLaVA config: the outer model_type, the rest in text_config) of the wrong type, values the decoder cannot run and absurd sizes
        /// (vocab_size 10^12, …): ModelWeights.load(directory:) refuses the config first, naming
        /// the config.json path and the key, without touching the weights.
        @Test(arguments: MalformedInputBatteryTests.CheckpointsAndConfigs.configFields)
        func badConfigFieldIsNamed(key: String, json: String, kind: InputError.Kind, object: String) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            // No weights in the folder: the config must be refused before they are looked for.
            let config = dir.path("config.json")
            try FileManager.default.copyItem(atPath: Battery.configFile, toPath: config)
            let value = try Battery.jsonValue(json)
            if key == "model_type" { try Battery.editJSON(config) { $0[key] = value } } else { try Battery.editTextConfig(config) { $0[key] = value } }
            let e = try #require(inputError { _ = try ModelWeights.load(directory: dir.url) }, "\(key) = \(json) was accepted")
            #expect(e.kind == kind && e.object == object && e.file == config, "\(e)")
        }
    }

    // MARK: prompt cases

    @Suite struct PromptCases {
        enum Damage: String, CaseIterable, Sendable {
            case nanFeature, infFeature, negativeInfFeature, featuresTooNarrow, embeddingsWrongWidth, nanEmbedding
            case gridTooSmall, gridZeroRows, gridNegative
            case tokenAtVocabSize, negativeToken, hugeToken, noSuffix
            case positionsTooShort, positionsTooLong, negativePosition, threeAxisPositionsOn1DModel
            case negativeDecodeSteps, visionSideNaN, visionSideWrongCount

            func apply(to c: inout PromptCase) throws {
                let m = try Battery.features(of: c)
                let s = c.sequenceLength
                func withFeature(_ v: Float) -> VisualInput {
                    var values = m.values
                    values[7] = v
                    return .features(Matrix(rows: m.rows, cols: m.cols, values: values))
                }
                switch self {
                case .nanFeature: c.visual = withFeature(.nan)
                case .infFeature: c.visual = withFeature(.infinity)
                case .negativeInfFeature: c.visual = withFeature(-.infinity)
                case .featuresTooNarrow:
                    c.visual = .features(Matrix(rows: m.rows, cols: m.cols - 8, values: Array(m.values.prefix(m.rows * (m.cols - 8)))))
                case .embeddingsWrongWidth:
                    c.visual = .embeddings(Matrix(rows: m.rows, cols: 32, values: [Float](repeating: 0, count: m.rows * 32)))
                case .nanEmbedding:
                    var values = [Float](repeating: 0, count: m.rows * 64)
                    values[0] = .nan
                    c.visual = .embeddings(Matrix(rows: m.rows, cols: 64, values: values))
                case .gridTooSmall: c.grid = ImageGrid(rows: c.grid.rows, cols: c.grid.cols - 1)
                case .gridZeroRows: c.grid = ImageGrid(rows: 0, cols: m.rows)
                case .gridNegative: c.grid = ImageGrid(rows: -c.grid.rows, cols: -c.grid.cols)
                case .tokenAtVocabSize: c.prefixTokens[0] = 256
                case .negativeToken: c.suffixTokens[c.suffixTokens.count - 1] = -1
                case .hugeToken: c.prefixTokens[0] = Int.max
                case .noSuffix: c.suffixTokens = []
                case .positionsTooShort: c.positions = PositionIDs(Array(0..<(s - 1)))
                case .positionsTooLong: c.positions = PositionIDs(Array(0...s))
                case .negativePosition:
                    var p = c.positions.linear
                    p[3] = -1
                    c.positions = PositionIDs(p)
                case .threeAxisPositionsOn1DModel:
                    let p = c.positions.linear
                    c.positions = PositionIDs(axes: [p, p, p])
                case .negativeDecodeSteps: c.decodeSteps = -1
                case .visionSideNaN:
                    var cls = [Float](repeating: 1, count: m.rows)
                    cls[0] = .nan
                    c.visionSide = VisionSideInputs(clsAttention: cls, similarityFeatures: Matrix(rows: m.rows, cols: 8, values: [Float](repeating: 0, count: m.rows * 8)))
                case .visionSideWrongCount:
                    c.visionSide = VisionSideInputs(clsAttention: [Float](repeating: 1, count: m.rows - 1),
                                                    similarityFeatures: Matrix(rows: m.rows, cols: 8, values: [Float](repeating: 0, count: m.rows * 8)))
                }
            }

            var expected: (kind: InputError.Kind, object: String) {
                switch self {
                case .nanFeature, .infFeature, .negativeInfFeature: (.badValue, "visual_features")
                case .featuresTooNarrow: (.badCase, "visual_features")
                case .embeddingsWrongWidth: (.badCase, "visual_embeddings")
                case .nanEmbedding: (.badValue, "visual_embeddings")
                case .gridTooSmall: (.badCase, "grid")
                // Refused on reading, before any product rows · cols (PromptCaseIO).
                case .gridZeroRows, .gridNegative: (.badCase, "/inputs/grid")
                case .tokenAtVocabSize, .hugeToken: (.badCase, "prefix_ids")
                case .negativeToken, .noSuffix: (.badCase, "suffix_ids")
                case .positionsTooShort, .positionsTooLong, .negativePosition, .threeAxisPositionsOn1DModel: (.badCase, "positions")
                case .negativeDecodeSteps: (.badCase, "decode_steps")
                case .visionSideNaN: (.badValue, "vision_side")
                case .visionSideWrongCount: (.badCase, "vision_side")
                }
            }
        }

        /// A case file (the shipped case, one thing broken, written with PromptCaseIO) read and
        /// validated against tiny-llama as `reroute run` does: NaN/±Inf in visual inputs,
        /// features or embeddings of the wrong width, a grid that does not hold N, token ids
        /// outside the vocabulary, no suffix, positions of the wrong length, negative or 3-D on a
        /// 1-D model, negative decode steps, bad vision-side inputs. Named error, file and object.
        @Test(arguments: MalformedInputBatteryTests.PromptCases.Damage.allCases)
        func semanticDamageIsRefusedNamingTheObject(damage: Damage) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            var c = try Battery.shippedCase.get()
            try damage.apply(to: &c)
            let path = dir.path("\(damage.rawValue).h5")
            try Battery.writeCase(c, to: path)
            let e = try #require(inputError { try Battery.loadCaseForLlama(path) }, "\(damage) was accepted")
            #expect(e.kind == damage.expected.kind && e.object == damage.expected.object && e.file == path, "\(e)")
            #expect(e.description.contains(path))
        }

        /// decode_steps = 10^12 is an absurd size like any other: validation must refuse it,
        /// naming decode_steps, before a decoder sizes anything from it (FastDecoder allocates KV
        /// caches of S + steps − 1 entries per layer and aborts; the reference decoder loops
        /// 10^12 times).
        @Test func absurdDecodeStepsAreRefusedByValidation() throws {
            var c = try Battery.shippedCase.get()
            c.decodeSteps = 1_000_000_000_000
            let weights = try Battery.llama.get()
            let e = inputError { try c.validate(for: weights.config, projector: weights.projector, file: "absurd.h5") }
            #expect(e?.object == "decode_steps" && e?.file == "absurd.h5", "\(String(describing: e))")
        }

        static let missingObjects: [(String, String)] = [
            ("/inputs/prefix_ids", "/inputs/prefix_ids"),
            ("/inputs/suffix_ids", "/inputs/suffix_ids"),
            ("/inputs/grid", "/inputs/grid"),
            ("/inputs/positions", "/inputs/positions"),
            ("/inputs/decode_steps", "/inputs/decode_steps"),
            ("/inputs/visual_features", "visual_features"),
            ("/float64/greedy_tokens", "/float64/greedy_tokens"),
            ("/float32/logits", "/float32/logits"),
            ("/float32/step_logits", "/float32/step_logits"),
            ("/@format", "/@format"),
            ("/@format_version", "/@format_version"),
            ("/@model", "/@model"),
            ("/@case", "/@case"),
        ]

        /// A shipped case file with one dataset or attribute deleted: HFReferenceCase.load
        /// refuses it naming the file and the missing object.
        @Test(arguments: MalformedInputBatteryTests.PromptCases.missingObjects)
        func missingObjectIsNamed(object: String, mention: String) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.editedCopy(of: Battery.caseFile, in: dir, named: "case.h5") { fid in
                if object.contains("@") { AttributeEdit.delete(object).apply(to: fid) } else { _ = H5Ldelete(fid, object, chdf5_p_default()) }
            }
            let e = try #require(Battery.caught { _ = try HFReferenceCase.load(path: path) }, "accepted without \(object)")
            #expect(Battery.isClean(e, naming: path) && "\(e)".contains(mention), "\(e)")
        }

        /// A case file with neither transformers run (`/float64`, `/float32` deleted) is refused
        /// naming the file.
        @Test func caseWithoutRunsIsRefused() throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.editedCopy(of: Battery.caseFile, in: dir, named: "case.h5") { fid in
                H5Ldelete(fid, "/float64", chdf5_p_default())
                H5Ldelete(fid, "/float32", chdf5_p_default())
            }
            let e = try #require(Battery.caught { _ = try HFReferenceCase.load(path: path) })
            #expect(Battery.isClean(e, naming: path) && "\(e)".contains("/float64"), "\(e)")
        }

        static let datasetEdits: [(String, StoredKind, [Int])] = [
            ("/inputs/grid", .f64, [2]),
            ("/inputs/grid", .i64, [3]),
            ("/inputs/decode_steps", .i64, [1]),
            ("/inputs/positions", .i64, [156]),
            ("/inputs/positions", .i64, [2, 156]),
            ("/inputs/prefix_ids", .f32, [5]),
            ("/inputs/visual_features", .f32, [144, 48, 1]),
            ("/inputs/visual_features", .i64, [144, 48]),
            ("/float32/logits", .f32, [157, 256]),
            ("/float32/step_logits", .i64, [4, 256]),
            ("/float32/greedy_tokens", .i64, [2, 2]),
            ("/float64/hidden_states", .f32, [9, 156]),
            ("/float64/last_row_attention", .f32, [8, 4, 155]),
        ]

        /// A case file with one dataset of the wrong element type or shape (float grid, grid of 3,
        /// decode_steps not a scalar, 1-D or 2-axis positions, rank-3 features, logits rows ≠ S,
        /// …): HFReferenceCase.load names the file and the dataset.
        @Test(arguments: MalformedInputBatteryTests.PromptCases.datasetEdits)
        func wrongDTypeOrShapeIsNamed(dataset: String, kind: StoredKind, shape: [Int]) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.editedCopy(of: Battery.caseFile, in: dir, named: "case.h5") { fid in
                Battery.replaceDataset(fid, dataset, kind, shape)
            }
            let e = try #require(Battery.caught { _ = try HFReferenceCase.load(path: path) }, "accepted: \(dataset) as \(kind) \(shape)")
            #expect(Battery.isClean(e, naming: path) && Battery.object(of: e) == dataset, "\(e)")
        }

        static let attributeEdits: [(AttributeEdit, String)] = [
            (.int("/@format_version", 2), "/@format_version"),
            (.int("/@format_version", 0), "/@format_version"),
            (.string("/@format_version", "1"), "/@format_version"),
            (.string("/@format", "reroute.trace"), "/@format"),
            (.int("/@format", 1), "/@format"),
        ]

        /// Wrong format name or version (or of the wrong type) in a case file: refused naming the
        /// file and the attribute.
        @Test(arguments: MalformedInputBatteryTests.PromptCases.attributeEdits)
        func wrongFormatOrVersionIsNamed(edit: AttributeEdit, mention: String) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.editedCopy(of: Battery.caseFile, in: dir, named: "case.h5") { fid in edit.apply(to: fid) }
            let e = try #require(Battery.caught { _ = try HFReferenceCase.load(path: path) }, "accepted: \(edit)")
            #expect(Battery.isClean(e, naming: path) && Battery.object(of: e) == mention, "\(e)")
        }

        /// Extra objects in a case file (an unknown dataset under /inputs, an unknown run group,
        /// a root attribute) are ignored: the case loads with the same inputs and both runs.
        @Test func extraObjectsAreIgnored() throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.editedCopy(of: Battery.caseFile, in: dir, named: "case.h5") { fid in
                Battery.addDataset(fid, "/inputs/extra_notes")
                Battery.addDataset(fid, "/float16/logits")
                AttributeEdit.string("/@comment", "extra").apply(to: fid)
            }
            let loaded = try HFReferenceCase.load(path: path), shipped = try Battery.shippedCase.get()
            #expect(loaded.runs.map(\.name) == ["float64", "float32"])
            #expect(loaded.promptCase == shipped)
        }

        /// `/inputs/prefix_ids` declared with 10^15 elements (chunked, nothing written, the file
        /// stays small): refused as too large, naming the dataset, before anything is allocated.
        @Test func absurdDeclaredDatasetIsRefusedBeforeAllocating() throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            var created = false
            let path = try Battery.editedCopy(of: Battery.caseFile, in: dir, named: "case.h5") { fid in
                created = Battery.declareChunked(fid, "/inputs/prefix_ids", elements: 1_000_000_000_000_000, .i64)
            }
            try #require(created)
            let start = ContinuousClock.now
            let e = try #require(Battery.caught { _ = try HFReferenceCase.load(path: path) })
            #expect(ContinuousClock.now - start < .seconds(10))
            #expect((e as? HDF5Error)?.kind == .tooLarge && Battery.isClean(e, naming: path) && Battery.object(of: e) == "/inputs/prefix_ids", "\(e)")
        }
    }

    // MARK: traces

    @Suite struct Traces {
        static let missingObjects: [String] = [
            "/inputs/prefix_ids", "/inputs/suffix_ids", "/inputs/grid", "/inputs/positions", "/inputs/decode_steps",
            "/prefill/hidden_states", "/prefill/processed", "/prefill/positions", "/prefill/decode_positions",
            "/prefill/kv_length", "/prefill/logits", "/prefill/decisions", "/prefill/decisions/00/candidates",
            "/prefill/decisions/00/kept", "/prefill/decisions/00/deferred", "/prefill/decisions/00/scores",
            "/decode/tokens", "/decode/step_logits", "/decode/kv_length", "/budget/text_tokens", "/budget/flops_pdrop_paper",
            "/@schema", "/@schema_version", "/@model_config", "/@policy", "/@producer", "/@mode", "/@case", "/@seed",
            "/budget@matching", "/budget@image_tokens", "/budget@bytes_per_element",
            "/prefill/decisions/00@layer", "/prefill/decisions/00@budget",
        ]

        /// A golden trace with one dataset, group or attribute deleted: Trace.read refuses it
        /// naming the file and exactly that object.
        @Test(arguments: MalformedInputBatteryTests.Traces.missingObjects)
        func missingObjectIsNamed(object: String) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.editedCopy(of: Battery.traceFile, in: dir, named: "trace.h5") { fid in
                if object.contains("@") { AttributeEdit.delete(object).apply(to: fid) } else { _ = H5Ldelete(fid, object, chdf5_p_default()) }
            }
            let e = try #require(Battery.caught { _ = try Trace.read(from: path) }, "accepted without \(object)")
            #expect(Battery.isClean(e, naming: path) && Battery.object(of: e) == object, "\(e)")
        }

        /// The trace without `/inputs/visual_features` is refused naming `/inputs` and saying
        /// neither visual input is there.
        @Test func missingVisualInputIsNamed() throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.editedCopy(of: Battery.traceFile, in: dir, named: "trace.h5") { fid in
                H5Ldelete(fid, "/inputs/visual_features", chdf5_p_default())
            }
            let e = try #require(Battery.caught { _ = try Trace.read(from: path) })
            #expect(Battery.isClean(e, naming: path) && "\(e)".contains("visual_features"), "\(e)")
        }

        static let attributeEdits: [(AttributeEdit, String)] = [
            (.int("/@schema_version", 0), "/@schema_version"),
            (.int("/@schema_version", 2), "/@schema_version"),
            (.int("/@schema_version", -1), "/@schema_version"),
            (.int("/@schema_version", Int64.max), "/@schema_version"),
            (.string("/@schema_version", "1"), "/@schema_version"),
            (.double("/@schema_version", 1), "/@schema_version"),
            (.string("/@schema", "reroute.trace.v2"), "/@schema"),
            (.string("/@schema", ""), "/@schema"),
            (.int("/@schema", 1), "/@schema"),
            (.string("/@model_config", "not json"), "/@model_config"),
            (.string("/@model_config", "{}"), "/@model_config"),
            (.string("/@policy", "[]"), "/@policy"),
            (.string("/@seed", "1"), "/@seed"),
            (.string("/budget@matching", "7"), "/budget@matching"),
            (.string("/prefill/decisions/00@budget", "3"), "/prefill/decisions/00@budget"),
        ]

        /// Wrong schema versions (0, 2, −1, 2^63 − 1, a string, a float), a wrong schema name, and
        /// provenance / config / policy / budget attributes that are not what the schema says:
        /// refused naming the file and the attribute.
        @Test(arguments: MalformedInputBatteryTests.Traces.attributeEdits)
        func wrongSchemaOrAttributeIsNamed(edit: AttributeEdit, mention: String) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.editedCopy(of: Battery.traceFile, in: dir, named: "trace.h5") { fid in edit.apply(to: fid) }
            let e = try #require(Battery.caught { _ = try Trace.read(from: path) }, "accepted: \(edit)")
            #expect(Battery.isClean(e, naming: path) && Battery.object(of: e) == mention, "\(e)")
        }

        static let modelConfigEdits: [(String, String, String)] = [
            ("hiddenSize", "65", "/prefill/hidden_states"),
            ("layers", "9", "/prefill/hidden_states"),
            ("vocabSize", "300", "/decode/step_logits"),
            ("vocabSize", "1000000000000", "vocab_size"),
            ("heads", "0", "num_attention_heads"),
            ("kvHeads", "3", "num_key_value_heads"),
            ("headDim", "15", "head_dim"),
        ]

        /// `/@model_config` that disagrees with the stored data (other d, L or V) or that no
        /// decoder could run (absurd vocabulary, zero heads, indivisible KV heads, odd head
        /// width): refused naming the file and the dataset (or config key) that does not fit.
        @Test(arguments: MalformedInputBatteryTests.Traces.modelConfigEdits)
        func modelConfigThatDisagreesIsNamed(key: String, json: String, mention: String) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let text = try HDF5File(readingFrom: Battery.traceFile).stringAttribute("model_config")
            guard var config = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
                throw BatteryPlumbingError("/@model_config is not a JSON object")
            }
            try #require(config[key] != nil, "no \(key) in /@model_config")
            config[key] = try Battery.jsonValue(json)
            let edited = String(decoding: try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]), as: UTF8.self)
            let path = try Battery.editedCopy(of: Battery.traceFile, in: dir, named: "trace.h5") { fid in
                AttributeEdit.string("/@model_config", edited).apply(to: fid)
            }
            let e = try #require(Battery.caught { _ = try Trace.read(from: path) }, "accepted: \(key) = \(json)")
            #expect(Battery.isClean(e, naming: path) && Battery.object(of: e) == mention, "\(e)")
        }

        static let datasetEdits: [(String, StoredKind, [Int])] = [
            ("/prefill/logits", .i64, [256]),
            ("/prefill/logits", .f32, [257]),
            ("/prefill/kv_length", .f64, [8]),
            ("/prefill/hidden_states", .f32, [9, 108, 65]),
            ("/prefill/hidden_states", .f32, [9, 108]),
            ("/prefill/processed", .u8, [8, 109]),
            ("/prefill/positions", .i64, [8, 3, 108]),
            ("/prefill/decode_positions", .i64, [7]),
            ("/prefill/decisions/00/scores", .f64, [1]),
            ("/decode/step_logits", .f32, [3, 255]),
            ("/decode/kv_length", .i64, [9]),
            ("/budget/flops", .f64, [7]),
            ("/budget/kv_bytes", .f32, [8]),
            ("/inputs/grid", .f64, [2]),
            ("/inputs/decode_steps", .i64, [1]),
            ("/inputs/positions", .i64, [108]),
        ]

        /// A trace with one dataset of the wrong element type or of a shape that disagrees with
        /// the config (L = 8, d = 64, V = 256) or the sequence (S = 108): Trace.read names the file
        /// and the dataset.
        @Test(arguments: MalformedInputBatteryTests.Traces.datasetEdits)
        func wrongDTypeOrShapeIsNamed(dataset: String, kind: StoredKind, shape: [Int]) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.editedCopy(of: Battery.traceFile, in: dir, named: "trace.h5") { fid in
                Battery.replaceDataset(fid, dataset, kind, shape)
            }
            let e = try #require(Battery.caught { _ = try Trace.read(from: path) }, "accepted: \(dataset) as \(kind) \(shape)")
            #expect(Battery.isClean(e, naming: path) && Battery.object(of: e) == dataset, "\(e)")
        }

        enum NaNPlace: String, CaseIterable, Sendable {
            case lastLogits, stepLogits, scores, flops

            func apply(_ t: inout Trace) {
                switch self {
                case .lastLogits: t.lastLogits[3] = .nan
                case .stepLogits: t.stepLogits[0][5] = .nan
                case .scores: t.decisions[0].scores[0] = .nan
                case .flops: t.budget.layers[2].flops = .nan
                }
            }

            var dataset: String {
                switch self {
                case .lastLogits: "/prefill/logits"
                case .stepLogits: "/decode/step_logits"
                case .scores: "/prefill/decisions/00/scores"
                case .flops: "/budget/flops"
                }
            }
        }

        /// NaN in a stored tensor other than the hidden states (TraceTests covers those): last
        /// logits, step logits, decision scores, budget FLOPs. Refused naming file and dataset.
        @Test(arguments: MalformedInputBatteryTests.Traces.NaNPlace.allCases)
        func nanInAStoredTensorIsNamed(place: NaNPlace) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.damagedTrace(in: dir, named: "nan.h5") { place.apply(&$0) }
            let e = try #require(Battery.caught { _ = try Trace.read(from: path) }, "NaN in \(place.dataset) accepted")
            #expect(Battery.isClean(e, naming: path) && Battery.object(of: e) == place.dataset, "\(e)")
        }

        enum InputDamage: String, CaseIterable, Sendable {
            case nanFeature, infFeature, gridDoesNotHoldTheImage, positionsShorterThanTheSequence, tokenOutsideTheVocabulary

            func apply(_ t: inout Trace) throws {
                switch self {
                case .nanFeature, .infFeature:
                    let m = try Battery.features(of: t.input)
                    var values = m.values
                    values[3] = self == .nanFeature ? .nan : .infinity
                    t.input.visual = .features(Matrix(rows: m.rows, cols: m.cols, values: values))
                case .gridDoesNotHoldTheImage: t.input.grid = ImageGrid(rows: t.input.grid.rows, cols: t.input.grid.cols + 1)
                case .positionsShorterThanTheSequence:
                    let half = t.input.sequenceLength / 2
                    t.input.positions = PositionIDs(Array(0..<half))
                case .tokenOutsideTheVocabulary: t.input.prefixTokens[0] = t.config.vocabSize
                }
            }

            var mention: String {
                switch self {
                case .nanFeature, .infFeature: "visual_features"
                case .gridDoesNotHoldTheImage: "grid"
                case .positionsShorterThanTheSequence: "positions"
                case .tokenOutsideTheVocabulary: "prefix_ids"
                }
            }
        }

        /// A trace's `/inputs` is a prompt case (SPEC.md §9.1: "as §6"; §6: NaN/Inf in visual
        /// inputs, a grid that does not hold N, positions of the wrong length, token ids outside
        /// the vocabulary are refused; §9.1: reading checks every dataset's shape against the
        /// inputs and refuses NaN in stored tensors). Trace.read validates /inputs as a case, so
        /// `reroute conform --trace` never sees short positions
        /// (`conformRefusesATraceWithShortInputPositions`).
        @Test(arguments: MalformedInputBatteryTests.Traces.InputDamage.allCases)
        func traceInputsAreValidatedLikeACase(damage: InputDamage) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.damagedTrace(in: dir, named: "inputs.h5") { try damage.apply(&$0) }
            let e = try #require(Battery.caught { _ = try Trace.read(from: path) }, "Trace.read accepted \(damage)")
            #expect(Battery.isClean(e, naming: path) && "\(e)".contains(damage.mention), "\(e)")
        }

        /// Extra objects outside the schema (a group with a dataset, a dataset under /inputs, a
        /// root attribute) are ignored: the trace reads back identical to the golden.
        @Test func extraObjectsAreIgnored() throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.editedCopy(of: Battery.traceFile, in: dir, named: "trace.h5") { fid in
                Battery.addDataset(fid, "/extra/numbers")
                Battery.addDataset(fid, "/inputs/extra_notes")
                AttributeEdit.string("/@comment", "extra").apply(to: fid)
            }
            let t = try Trace.read(from: path), golden = try Battery.goldenTrace.get()
            #expect(t.decisions == golden.decisions && t.lastLogits == golden.lastLogits && t.input == golden.input)
        }

        /// An extra member of `/prefill/decisions` is read as a decision (the group lists them), so
        /// a stray group or dataset there is refused naming its missing `candidates`.
        @Test(arguments: ["group", "dataset"])
        func strayMemberOfTheDecisionsIsRefused(kind: String) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.editedCopy(of: Battery.traceFile, in: dir, named: "trace.h5") { fid in
                if kind == "group" {
                    let g = H5Gcreate2(fid, "/prefill/decisions/zz", chdf5_p_default(), chdf5_p_default(), chdf5_p_default())
                    if g >= 0 { H5Gclose(g) }
                } else {
                    Battery.replaceDataset(fid, "/prefill/decisions/zz", .i64, [3])
                }
            }
            let e = try #require(Battery.caught { _ = try Trace.read(from: path) })
            #expect(Battery.isClean(e, naming: path) && Battery.object(of: e) == "/prefill/decisions/zz/candidates", "\(e)")
        }

        /// `/prefill/logits` declared with 10^15 elements (chunked, nothing written): refused as
        /// too large, naming the dataset, at once.
        @Test func absurdDeclaredDatasetIsRefusedBeforeAllocating() throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            var created = false
            let path = try Battery.editedCopy(of: Battery.traceFile, in: dir, named: "trace.h5") { fid in
                created = Battery.declareChunked(fid, "/prefill/logits", elements: 1_000_000_000_000_000, .f32)
            }
            try #require(created)
            let start = ContinuousClock.now
            let e = try #require(Battery.caught { _ = try Trace.read(from: path) })
            #expect(ContinuousClock.now - start < .seconds(10))
            // Refused from its declared shape (which the config fixes) before any read.
            let refused = (e as? HDF5Error)?.kind == .tooLarge || (e as? InputError)?.kind == .badShape
            #expect(refused && Battery.isClean(e, naming: path) && Battery.object(of: e) == "/prefill/logits", "\(e)")
        }

        /// `/prefill/logits` declared with 2^28 elements (1 GiB of float32; the ~230 KB file
        /// writes none of them) where the config fixes V = 256: the shape is known to be wrong
        /// before reading, so it must be refused without allocating or filling a gigabyte (peak
        /// resident memory over the read grows < 512 MiB): Trace.read checks each dataset's declared
        /// shape before reading it (reading first would allocate up to HDF5File.maxElements = 2^31
        /// elements from a file of a few KB).
        @Test func oversizedDatasetIsRefusedBeforeReadingIt() throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            var created = false
            let path = try Battery.editedCopy(of: Battery.traceFile, in: dir, named: "trace.h5") { fid in
                created = Battery.declareChunked(fid, "/prefill/logits", elements: 1 << 28, .f32)
            }
            try #require(created)
            Battery.resetPeakResident()
            let before = Battery.peakResidentKiB()
            let start = ContinuousClock.now
            let error = Battery.caught { _ = try Trace.read(from: path) }
            let elapsed = ContinuousClock.now - start
            let after = Battery.peakResidentKiB()
            let e = try #require(error)
            #expect(Battery.isClean(e, naming: path) && Battery.object(of: e) == "/prefill/logits", "\(e)")
            #expect(elapsed < .seconds(30), "took \(elapsed)")
            if let before, let after {
                #expect(after - before < 512 * 1024, "peak resident memory grew by \(after - before) KiB while reading")
            }
        }
    }

    // MARK: the command line

    /// Broken inputs through the `reroute` binary: exit 2, `reroute: error:` naming the file (and
    /// the object), nothing written, never a signal or a hang.
    @Suite struct CLI {
        enum ModelDamage: String, CaseIterable, Sendable {
            case absurdVocabSize, hiddenSizeDisagrees, truncatedWeights, transposedWeight, indexNamesAMissingShard

            /// Damages a copy of a shipped model folder in `dir`; returns the folder and what the
            /// error must name.
            func prepare(in dir: TempDir) throws -> (folder: URL, mentions: [String]) {
                if self == .indexNamesAMissingShard {
                    let folder = dir.url.appendingPathComponent("tiny-qwen2")
                    try Battery.copyModel(Battery.tinyQwen2, to: folder)
                    try Battery.editJSON(folder.appendingPathComponent("model.safetensors.index.json").path) { obj in
                        var map = obj["weight_map"] as? [String: Any] ?? [:]
                        map["model.language_model.norm.weight"] = "model-00003-of-00003.safetensors"
                        obj["weight_map"] = map
                    }
                    return (folder, [folder.appendingPathComponent("model-00003-of-00003.safetensors").path])
                }
                let folder = dir.url.appendingPathComponent("tiny-llama")
                try Battery.copyModel(Battery.tinyLlama, to: folder)
                let config = folder.appendingPathComponent("config.json").path
                let weights = folder.appendingPathComponent("model.safetensors").path
                switch self {
                case .absurdVocabSize:
                    try Battery.editTextConfig(config) { $0["vocab_size"] = 1_000_000_000_000 }
                    return (folder, [config, "text_config.vocab_size"])
                case .hiddenSizeDisagrees:
                    try Battery.editTextConfig(config) { $0["hidden_size"] = 128 }
                    return (folder, [weights, "language_model.model.layers.0.input_layernorm.weight"])
                case .truncatedWeights:
                    // The last tensor of the file is the vision tower's: still named, though never read.
                    try Array(try Battery.bytes(of: weights).dropLast(64)).write(to: weights)
                    return (folder, [weights, "vision_tower.pre_layrnorm.weight"])
                case .transposedWeight:
                    try Battery.editSafeTensorsHeader(weights) { header, _ in
                        guard var entry = header["language_model.model.layers.5.mlp.gate_proj.weight"] as? [String: Any] else {
                            throw BatteryPlumbingError("no gate_proj in layer 5")
                        }
                        entry["shape"] = [64, 172]
                        header["language_model.model.layers.5.mlp.gate_proj.weight"] = entry
                    }
                    return (folder, [weights, "language_model.model.layers.5.mlp.gate_proj.weight"])
                case .indexNamesAMissingShard:
                    throw BatteryPlumbingError("handled above")
                }
            }
        }

        /// `reroute inspect` on a model folder with an absurd vocabulary, a config that disagrees
        /// with the weights, truncated weights, a transposed matrix, an index naming a missing
        /// shard: exit 2 naming the file and the key or tensor.
        @Test(arguments: MalformedInputBatteryTests.CLI.ModelDamage.allCases)
        func inspectRefusesABrokenModelFolder(damage: ModelDamage) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let (folder, mentions) = try damage.prepare(in: dir)
            let r = try Battery.runCLI(["inspect", folder.path])
            #expect(r.refuses(mentioning: mentions), "\(damage): \(r)")
        }

        enum TraceDamage: String, CaseIterable, Sendable {
            case truncated, missingKVLength, nanLogits, wrongSchemaVersion, absurdDeclaration

            /// Writes the broken trace in `dir`; returns the command line and what the error must name.
            func prepare(in dir: TempDir) throws -> (args: [String], mentions: [String]) {
                switch self {
                case .truncated:
                    let path = dir.path("truncated.h5")
                    let b = try Battery.bytes(of: Battery.traceFile)
                    try Array(b.prefix(b.count / 2)).write(to: path)
                    return (["show", path], [path])
                case .missingKVLength:
                    let path = try Battery.editedCopy(of: Battery.traceFile, in: dir, named: "missing.h5") { fid in
                        H5Ldelete(fid, "/prefill/kv_length", chdf5_p_default())
                    }
                    return (["diff", Battery.traceFile, path], [path, "/prefill/kv_length"])
                case .nanLogits:
                    let path = try Battery.damagedTrace(in: dir, named: "nan.h5") { $0.lastLogits[3] = .nan }
                    return (["show", path], [path, "/prefill/logits"])
                case .wrongSchemaVersion:
                    let path = try Battery.editedCopy(of: Battery.traceFile, in: dir, named: "v2.h5") { fid in
                        AttributeEdit.int("/@schema_version", 2).apply(to: fid)
                    }
                    return (["conform", "--trace", path], [path, "/@schema_version"])
                case .absurdDeclaration:
                    let path = try Battery.editedCopy(of: Battery.traceFile, in: dir, named: "huge.h5") { fid in
                        Battery.declareChunked(fid, "/prefill/logits", elements: 1_000_000_000_000_000, .f32)
                    }
                    return (["routes", path], [path, "/prefill/logits"])
                }
            }
        }

        /// `reroute show`, `diff`, `conform --trace` and `routes` on a truncated trace, one missing
        /// a dataset, one with NaN logits, one of schema version 2, one declaring 10^15 logits:
        /// exit 2 naming the file and the object.
        @Test(arguments: MalformedInputBatteryTests.CLI.TraceDamage.allCases)
        func traceCommandsRefuseABrokenTrace(damage: TraceDamage) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let (args, mentions) = try damage.prepare(in: dir)
            let r = try Battery.runCLI(args)
            #expect(r.refuses(mentioning: mentions), "\(damage): \(r)")
        }

        enum CaseDamage: String, CaseIterable, Sendable {
            case nanFeature, tokenOutsideTheVocabulary, missingGrid, gridOverflowsInt, absurdDecodeSteps

            /// Writes the broken case in `dir`; returns its path and what the error must name.
            func prepare(in dir: TempDir) throws -> (path: String, mentions: [String]) {
                let path = dir.path("\(rawValue).h5")
                var c = try Battery.shippedCase.get()
                switch self {
                case .nanFeature:
                    try MalformedInputBatteryTests.PromptCases.Damage.nanFeature.apply(to: &c)
                    try Battery.writeCase(c, to: path)
                    return (path, [path, "visual_features"])
                case .tokenOutsideTheVocabulary:
                    try MalformedInputBatteryTests.PromptCases.Damage.tokenAtVocabSize.apply(to: &c)
                    try Battery.writeCase(c, to: path)
                    return (path, [path, "prefix_ids"])
                case .missingGrid:
                    let edited = try Battery.editedCopy(of: Battery.caseFile, in: dir, named: "missing-grid.h5") { fid in
                        H5Ldelete(fid, "/inputs/grid", chdf5_p_default())
                    }
                    return (edited, [edited, "/inputs/grid"])
                case .gridOverflowsInt:
                    c.grid = ImageGrid(rows: 1 << 32, cols: 1 << 32)  // rows · cols overflows Int
                    try Battery.writeCase(c, to: path)
                    return (path, [path, "grid"])
                case .absurdDecodeSteps:
                    c.decodeSteps = 1_000_000_000_000
                    try Battery.writeCase(c, to: path)
                    return (path, [path, "decode_steps"])
                }
            }
        }

        /// `reroute run --decoder fast` on a case with NaN features, a token outside the
        /// vocabulary, no grid, a grid whose rows · cols overflows Int, 10^12 decode steps: exit 2
        /// naming the case file and the object, and no trace (or temporary file) written. The last
        /// two fail today: the grid traps in ImageGrid.count (PromptCase.validate), the steps abort
        /// in FastDecoder's KV-cache allocation.
        @Test(arguments: MalformedInputBatteryTests.CLI.CaseDamage.allCases)
        func runRefusesABrokenCaseAndWritesNothing(damage: CaseDamage) throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let (casePath, mentions) = try damage.prepare(in: dir)
            let outDir = dir.url.appendingPathComponent("out")
            try FileManager.default.createDirectory(at: outDir, withIntermediateDirectories: true)
            let r = try Battery.runCLI(["run", "--model", Battery.tinyLlama.path, "--case", casePath, "--policy", "dense",
                                        "--decoder", "fast", "--out", outDir.appendingPathComponent("trace.h5").path])
            #expect(r.refuses(mentioning: mentions), "\(damage): \(r)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: outDir.path).isEmpty)
        }

        /// `reroute conform --trace` on a trace whose `/inputs/positions` holds half the sequence:
        /// exit 2 naming the file and the positions, before TraceLaws.check could index past them.
        @Test func conformRefusesATraceWithShortInputPositions() throws {
            let dir = try TempDir()
            defer { dir.cleanup() }
            let path = try Battery.damagedTrace(in: dir, named: "short-positions.h5") { t in
                let half = t.input.sequenceLength / 2
                t.input.positions = PositionIDs(Array(0..<half))
            }
            let r = try Battery.runCLI(["conform", "--trace", path])
            #expect(r.refuses(mentioning: [path, "positions"]), "\(r)")
        }
    }
}
