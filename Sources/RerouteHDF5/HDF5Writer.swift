import CHDF5
import Foundation

/// Element types the writer stores, with their HDF5 file types (little-endian IEEE / std).
public enum HDF5StoredType: String, Sendable {
    case float32, float64, int32, int64, uint8

    var fileType: hid_t {
        switch self {
        case .float32: chdf5_t_ieee_f32le()
        case .float64: chdf5_t_ieee_f64le()
        case .int32: chdf5_t_std_i32le()
        case .int64: chdf5_t_std_i64le()
        case .uint8: chdf5_t_std_u8le()
        }
    }
}

/// Writes a new HDF5 file **atomically**: everything goes to a temporary file next to the
/// target, and `commit()` closes it and renames it into place. Until then the target is
/// untouched; a writer that is dropped without `commit()` deletes its temporary file.
/// An existing target is replaced only with `overwrite: true`.
///
/// Strings are variable-length UTF-8 (h5py reads them as `str`). Datasets of more than
/// `chunkThreshold` elements are chunked and compressed (shuffle + deflate 4).
public final class HDF5Writer: @unchecked Sendable {
    public let path: String
    public let temporaryPath: String
    private var id: hid_t
    private var committed = false
    public static let chunkThreshold = 4096

    public init(creating path: String, overwrite: Bool = false) throws {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        self.path = path
        if !overwrite, FileManager.default.fileExists(atPath: path) {
            throw HDF5Error(.cannotCreate, file: path, "exists; refusing to overwrite it (pass overwrite)")
        }
        let dir = (path as NSString).deletingLastPathComponent
        let folder = dir.isEmpty ? "." : dir
        Self.removeStaleTemporaries(in: folder)
        // A short name of its own (an output name of up to NAME_MAX bytes still fits).
        temporaryPath = folder + "/.reroute-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tmp"
        id = H5Fcreate(temporaryPath, chdf5_acc_excl(), chdf5_p_default(), chdf5_p_default())
        guard id >= 0 else { throw HDF5Error(.cannotCreate, file: path, "cannot create the temporary file \(temporaryPath)") }
    }

    /// Temporary files of writers that were killed (their process is gone) are removed by the
    /// next writer in the same folder, so a SIGKILL leaves nothing behind for long.
    static func removeStaleTemporaries(in folder: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names where name.hasPrefix(".reroute-") && name.hasSuffix(".tmp") {
            let parts = name.dropFirst(".reroute-".count).dropLast(".tmp".count).split(separator: "-")
            guard parts.count == 2, let pid = Int32(parts[0]), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0, errno == ESRCH { unlink(folder + "/" + name) }
        }
    }

    deinit {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        if !committed {
            if id >= 0 { H5Fclose(id) }
            unlink(temporaryPath)
        }
    }

    /// Flushes, closes and renames the file into place (atomic on one file system).
    public func commit() throws {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        guard !committed else { return }
        guard H5Fflush(id, H5F_SCOPE_GLOBAL) >= 0, H5Fclose(id) >= 0 else {
            throw HDF5Error(.ioFailed, file: path, "cannot flush the temporary file")
        }
        id = -1
        let fd = open(temporaryPath, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(temporaryPath, path) == 0 else {
            unlink(temporaryPath)
            throw HDF5Error(.ioFailed, file: path, "cannot rename \(temporaryPath) into place: \(String(cString: strerror(errno)))")
        }
        committed = true
    }

    /// Creates a group (and its parents) at an absolute path such as `/prefill/decisions`.
    public func createGroup(_ groupPath: String) throws {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        var prefix = ""
        for part in groupPath.split(separator: "/") {
            prefix += "/" + part
            if H5Lexists(id, prefix, chdf5_p_default()) > 0 { continue }
            // No modification times in object headers: the same content gives the same bytes.
            let gcpl = H5Pcreate(chdf5_p_group_create())
            defer { H5Pclose(gcpl) }
            H5Pset_obj_track_times(gcpl, false)
            let g = H5Gcreate2(id, prefix, chdf5_p_default(), gcpl, chdf5_p_default())
            guard g >= 0 else { throw HDF5Error(.cannotCreate, file: path, object: prefix, "cannot create group") }
            H5Gclose(g)
        }
    }

    public func write(_ objectPath: String, _ values: [Float], shape: [Int]) throws {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        try write(objectPath, values, shape: shape, type: .float32, memType: chdf5_t_native_float())
    }

    public func write(_ objectPath: String, _ values: [Double], shape: [Int]) throws {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        try write(objectPath, values, shape: shape, type: .float64, memType: chdf5_t_native_double())
    }

    public func write(_ objectPath: String, _ values: [Int], shape: [Int], type: HDF5StoredType = .int64) throws {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        switch type {
        case .int64: try write(objectPath, values.map { Int64($0) }, shape: shape, type: .int64, memType: chdf5_t_native_int64())
        case .int32: try write(objectPath, values.map { Int32(clamping: $0) }, shape: shape, type: .int32, memType: chdf5_t_native_int32())
        case .uint8: try write(objectPath, values.map { UInt8(clamping: $0) }, shape: shape, type: .uint8, memType: chdf5_t_native_uint8())
        default: throw HDF5Error(.wrongType, file: path, object: objectPath, "integers cannot be stored as \(type.rawValue)")
        }
    }

    private func write<T>(_ objectPath: String, _ values: [T], shape: [Int], type: HDF5StoredType, memType: hid_t) throws {
        HDF5Library.initialize()
        guard shape.reduce(1, *) == values.count else {
            throw HDF5Error(.wrongShape, file: path, object: objectPath, "\(values.count) values for shape \(shape)")
        }
        let parent = (objectPath as NSString).deletingLastPathComponent
        if parent != "/" && !parent.isEmpty { try createGroup(parent) }
        var dims = shape.map { hsize_t($0) }
        let space = shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(shape.count), &dims, nil)
        defer { H5Sclose(space) }
        let dcpl = H5Pcreate(chdf5_p_dataset_create())
        defer { H5Pclose(dcpl) }
        H5Pset_obj_track_times(dcpl, false)
        if values.count > Self.chunkThreshold, !shape.contains(0) {
            // Chunks of whole trailing rows, about 64 KiB.
            var chunk = dims
            var elements = chunk.reduce(1, *)
            var axis = 0
            while elements > 16384, axis < chunk.count {
                let shrink = max(1, chunk[axis] / max(1, elements / 16384))
                elements = elements / chunk[axis] * shrink
                chunk[axis] = shrink
                axis += 1
            }
            H5Pset_chunk(dcpl, Int32(chunk.count), &chunk)
            H5Pset_shuffle(dcpl)
            H5Pset_deflate(dcpl, 4)
        }
        let ds = H5Dcreate2(id, objectPath, type.fileType, space, chdf5_p_default(), dcpl, chdf5_p_default())
        guard ds >= 0 else { throw HDF5Error(.cannotCreate, file: path, object: objectPath, "cannot create dataset") }
        defer { H5Dclose(ds) }
        if !values.isEmpty {
            let status = values.withUnsafeBytes { H5Dwrite(ds, memType, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), $0.baseAddress) }
            guard status >= 0 else { throw HDF5Error(.ioFailed, file: path, object: objectPath, "write failed") }
        }
    }

    /// A variable-length UTF-8 string attribute on a group or dataset ("/" = root).
    public func setAttribute(_ name: String, _ value: String, on objectPath: String = "/") throws {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        let t = H5Tcopy(chdf5_t_c_s1())
        defer { H5Tclose(t) }
        H5Tset_size(t, chdf5_t_variable())
        H5Tset_cset(t, H5T_CSET_UTF8)
        try withNewAttribute(name, on: objectPath, type: t) { attr in
            try value.withCString { cstr in
                var ptr: UnsafePointer<CChar>? = cstr
                guard H5Awrite(attr, t, &ptr) >= 0 else { throw HDF5Error(.ioFailed, file: path, object: "\(objectPath)@\(name)", "write failed") }
            }
        }
    }

    public func setAttribute(_ name: String, _ value: Int, on objectPath: String = "/") throws {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        var v = Int64(value)
        try withNewAttribute(name, on: objectPath, type: chdf5_t_std_i64le()) { attr in
            guard H5Awrite(attr, chdf5_t_native_int64(), &v) >= 0 else { throw HDF5Error(.ioFailed, file: path, object: "\(objectPath)@\(name)", "write failed") }
        }
    }

    public func setAttribute(_ name: String, _ value: Double, on objectPath: String = "/") throws {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        var v = value
        try withNewAttribute(name, on: objectPath, type: chdf5_t_ieee_f64le()) { attr in
            guard H5Awrite(attr, chdf5_t_native_double(), &v) >= 0 else { throw HDF5Error(.ioFailed, file: path, object: "\(objectPath)@\(name)", "write failed") }
        }
    }

    private func withNewAttribute(_ name: String, on objectPath: String, type: hid_t, _ body: (hid_t) throws -> Void) throws {
        HDF5Library.initialize()
        let space = H5Screate(H5S_SCALAR)
        defer { H5Sclose(space) }
        let attr = H5Acreate_by_name(id, objectPath, name, type, space, chdf5_p_default(), chdf5_p_default(), chdf5_p_default())
        guard attr >= 0 else { throw HDF5Error(.cannotCreate, file: path, object: "\(objectPath)@\(name)", "cannot create attribute") }
        defer { H5Aclose(attr) }
        try body(attr)
    }
}
