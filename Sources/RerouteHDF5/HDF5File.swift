import CHDF5
import Foundation

/// Element kinds the suite stores.
public enum HDF5ElementKind: String, Sendable {
    case float, integer, string, other
}

/// An open HDF5 file (read-only here; writing comes with the trace schema).
///
/// HDF5's automatic error printing is turned off once per process; failures become
/// `HDF5Error`s that name this file and the object.
public final class HDF5File: @unchecked Sendable {
    public let path: String
    let id: hid_t

    /// Largest dataset, in elements, a read will allocate (a hostile file cannot ask for more).
    public static let maxElements = 1 << 27

    /// Opens an existing file read-only.
    public init(readingFrom path: String) throws {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        self.path = path
        // Before H5Fopen: a FIFO or device would block it or stream without end.
        var st = stat()
        guard stat(path, &st) == 0 else { throw HDF5Error(.cannotOpen, file: path, "no such file") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw HDF5Error(.cannotOpen, file: path, "not a regular file") }
        let fid = H5Fopen(path, chdf5_acc_rdonly(), chdf5_p_default())
        guard fid >= 0 else { throw HDF5Error(.cannotOpen, file: path, "not a readable HDF5 file") }
        id = fid
    }

    deinit {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        H5Fclose(id)
    }

    /// Whether a link (group or dataset) exists at an absolute path such as `/inputs/grid`.
    public func exists(_ objectPath: String) -> Bool {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        var prefix = ""
        for part in objectPath.split(separator: "/") {
            prefix += "/" + part
            if H5Lexists(id, prefix, chdf5_p_default()) <= 0 { return false }
        }
        return true
    }

    /// Names of the links directly under a group, sorted by name.
    public func children(of groupPath: String) throws -> [String] {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        guard groupPath == "/" || exists(groupPath) else { throw HDF5Error(.missing, file: path, object: groupPath, "no such group") }
        let g = H5Gopen2(id, groupPath, chdf5_p_default())
        guard g >= 0 else { throw HDF5Error(.cannotOpen, file: path, object: groupPath, "not a group") }
        defer { H5Gclose(g) }
        var info = H5G_info_t()
        guard H5Gget_info(g, &info) >= 0 else { throw HDF5Error(.ioFailed, file: path, object: groupPath, "cannot list") }
        guard info.nlinks < 1 << 20 else { throw HDF5Error(.tooLarge, file: path, object: groupPath, "\(info.nlinks) members") }
        var names: [String] = []
        for i in 0..<info.nlinks {
            let n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, chdf5_p_default())
            guard n >= 0 else { throw HDF5Error(.ioFailed, file: path, object: groupPath, "cannot read member \(i)") }
            var buf = [CChar](repeating: 0, count: Int(n) + 1)
            H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, Int(n) + 1, chdf5_p_default())
            names.append(String(cString: buf))
        }
        return names.sorted()
    }

    /// Shape of a dataset (empty for a scalar).
    public func shape(_ objectPath: String) throws -> [Int] {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        return try withDataset(objectPath) { ds in try Self.shape(of: ds, file: path, object: objectPath) }
    }

    /// Element kind of a dataset.
    public func elementKind(_ objectPath: String) throws -> HDF5ElementKind {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        return try withDataset(objectPath) { ds in
            let t = H5Dget_type(ds)
            defer { H5Tclose(t) }
            return Self.kind(of: t)
        }
    }

    /// A float32/float64 dataset read as `Float` (float64 is rounded).
    public func readFloats(_ objectPath: String, maxElements: Int = HDF5File.maxElements) throws -> (values: [Float], shape: [Int]) {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        return try read(objectPath, expect: .float, memType: chdf5_t_native_float(), zero: Float(0), maxElements: maxElements)
    }

    /// A float dataset read as `Double` (float32 widens exactly).
    public func readDoubles(_ objectPath: String) throws -> (values: [Double], shape: [Int]) {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        return try read(objectPath, expect: .float, memType: chdf5_t_native_double(), zero: Double(0), maxElements: Self.maxElements)
    }

    /// An integer dataset of any width read as `Int` (through int64).
    public func readInts(_ objectPath: String, maxElements: Int = HDF5File.maxElements) throws -> (values: [Int], shape: [Int]) {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        let (v, s) = try read(objectPath, expect: .integer, memType: chdf5_t_native_int64(), zero: Int64(0), maxElements: maxElements)
        return (v.map { Int($0) }, s)
    }

    /// Whether the object at `objectPath` ("/" for the root) has the attribute `name`.
    public func hasAttribute(_ name: String, of objectPath: String = "/") -> Bool {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        guard objectPath == "/" || exists(objectPath) else { return false }
        return H5Aexists_by_name(id, objectPath, name, chdf5_p_default()) > 0
    }

    /// An attribute of the object at `objectPath` ("/" for the root) as a string.
    public func stringAttribute(_ name: String, of objectPath: String = "/") throws -> String {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        return try withAttribute(name, of: objectPath) { attr, objName in
            let t = H5Aget_type(attr)
            defer { H5Tclose(t) }
            guard H5Tget_class(t) == H5T_STRING else {
                throw HDF5Error(.wrongType, file: path, object: objName, "attribute is not a string")
            }
            // One string: the buffers below hold one element, and H5Aread fills every element.
            let space = H5Aget_space(attr)
            defer { H5Sclose(space) }
            guard H5Sget_simple_extent_npoints(space) == 1 else { throw HDF5Error(.wrongShape, file: path, object: objName, "not a scalar") }
            if H5Tis_variable_str(t) > 0 {
                let mem = H5Tcopy(chdf5_t_c_s1())
                defer { H5Tclose(mem) }
                H5Tset_size(mem, chdf5_t_variable())
                H5Tset_cset(mem, H5T_CSET_UTF8)
                var ptr: UnsafeMutablePointer<CChar>? = nil
                guard H5Aread(attr, mem, &ptr) >= 0 else { throw HDF5Error(.ioFailed, file: path, object: objName, "cannot read") }
                defer { if let ptr { H5free_memory(ptr) } }
                return ptr.map { String(cString: $0) } ?? ""
            }
            let size = H5Tget_size(t)
            guard size > 0, size < 1 << 24 else { throw HDF5Error(.tooLarge, file: path, object: objName, "string of \(size) bytes") }
            var buf = [UInt8](repeating: 0, count: size + 1)
            guard H5Aread(attr, t, &buf) >= 0 else { throw HDF5Error(.ioFailed, file: path, object: objName, "cannot read") }
            let end = buf.firstIndex(of: 0) ?? size
            return String(decoding: buf[0..<end], as: UTF8.self)
        }
    }

    /// A scalar integer attribute.
    public func intAttribute(_ name: String, of objectPath: String = "/") throws -> Int {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        return try withAttribute(name, of: objectPath) { attr, objName in
            let t = H5Aget_type(attr)
            defer { H5Tclose(t) }
            guard H5Tget_class(t) == H5T_INTEGER else { throw HDF5Error(.wrongType, file: path, object: objName, "attribute is not an integer") }
            let space = H5Aget_space(attr)
            defer { H5Sclose(space) }
            guard H5Sget_simple_extent_npoints(space) == 1 else { throw HDF5Error(.wrongShape, file: path, object: objName, "not a scalar") }
            var v: Int64 = 0
            guard H5Aread(attr, chdf5_t_native_int64(), &v) >= 0 else { throw HDF5Error(.ioFailed, file: path, object: objName, "cannot read") }
            return Int(v)
        }
    }

    /// A scalar float attribute.
    public func doubleAttribute(_ name: String, of objectPath: String = "/") throws -> Double {
        HDF5Library.lock.lock()
        defer { HDF5Library.lock.unlock() }
        HDF5Library.initialize()
        return try withAttribute(name, of: objectPath) { attr, objName in
            let t = H5Aget_type(attr)
            defer { H5Tclose(t) }
            guard H5Tget_class(t) == H5T_FLOAT || H5Tget_class(t) == H5T_INTEGER else {
                throw HDF5Error(.wrongType, file: path, object: objName, "attribute is not a number")
            }
            let space = H5Aget_space(attr)
            defer { H5Sclose(space) }
            guard H5Sget_simple_extent_npoints(space) == 1 else { throw HDF5Error(.wrongShape, file: path, object: objName, "not a scalar") }
            var v: Double = 0
            guard H5Aread(attr, chdf5_t_native_double(), &v) >= 0 else { throw HDF5Error(.ioFailed, file: path, object: objName, "cannot read") }
            return v
        }
    }

    // MARK: - Internals

    private func withDataset<R>(_ objectPath: String, _ body: (hid_t) throws -> R) throws -> R {
        guard exists(objectPath) else { throw HDF5Error(.missing, file: path, object: objectPath, "no such dataset") }
        let ds = H5Dopen2(id, objectPath, chdf5_p_default())
        guard ds >= 0 else { throw HDF5Error(.cannotOpen, file: path, object: objectPath, "not a dataset") }
        defer { H5Dclose(ds) }
        return try body(ds)
    }

    private func withAttribute<R>(_ name: String, of objectPath: String, _ body: (hid_t, String) throws -> R) throws -> R {
        HDF5Library.initialize()
        let objName = objectPath == "/" ? "/@\(name)" : "\(objectPath)@\(name)"
        guard objectPath == "/" || exists(objectPath) else { throw HDF5Error(.missing, file: path, object: objectPath, "no such object") }
        guard H5Aexists_by_name(id, objectPath, name, chdf5_p_default()) > 0 else {
            throw HDF5Error(.missing, file: path, object: objName, "no such attribute")
        }
        let attr = H5Aopen_by_name(id, objectPath, name, chdf5_p_default(), chdf5_p_default())
        guard attr >= 0 else { throw HDF5Error(.cannotOpen, file: path, object: objName, "cannot open attribute") }
        defer { H5Aclose(attr) }
        return try body(attr, objName)
    }

    static func kind(of type: hid_t) -> HDF5ElementKind {
        switch H5Tget_class(type) {
        case H5T_FLOAT: .float
        case H5T_INTEGER: .integer
        case H5T_STRING: .string
        default: .other
        }
    }

    static func shape(of ds: hid_t, file: String, object: String) throws -> [Int] {
        let space = H5Dget_space(ds)
        guard space >= 0 else { throw HDF5Error(.ioFailed, file: file, object: object, "no dataspace") }
        defer { H5Sclose(space) }
        // A null dataspace holds no element at all; reading it would give a made-up zero.
        if H5Sget_simple_extent_type(space) == H5S_NULL {
            throw HDF5Error(.wrongShape, file: file, object: object, "null dataspace (no elements)")
        }
        let rank = H5Sget_simple_extent_ndims(space)
        guard rank >= 0, rank <= 32 else { throw HDF5Error(.wrongShape, file: file, object: object, "rank \(rank)") }
        var dims = [hsize_t](repeating: 0, count: Int(rank))
        if rank > 0 { H5Sget_simple_extent_dims(space, &dims, nil) }
        return dims.map { Int(clamping: $0) }
    }

    /// Reads a whole dataset after checking its declared element count against `maxElements`.
    private func read<T>(_ objectPath: String, expect: HDF5ElementKind, memType: hid_t, zero: T, maxElements: Int) throws -> (values: [T], shape: [Int]) {
        try withDataset(objectPath) { ds in
            let t = H5Dget_type(ds)
            defer { H5Tclose(t) }
            let kind = Self.kind(of: t)
            guard kind == expect else {
                throw HDF5Error(.wrongType, file: path, object: objectPath, "holds \(kind.rawValue) elements, expected \(expect.rawValue)")
            }
            let shape = try Self.shape(of: ds, file: path, object: objectPath)
            var count = 1
            for d in shape {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                guard !o, p <= maxElements else {
                    throw HDF5Error(.tooLarge, file: path, object: objectPath, "shape \(shape) exceeds \(maxElements) elements")
                }
                count = p
            }
            var values = [T](repeating: zero, count: count)
            if count > 0 {
                let status = values.withUnsafeMutableBytes { H5Dread(ds, memType, chdf5_s_all(), chdf5_s_all(), chdf5_p_default(), $0.baseAddress) }
                guard status >= 0 else { throw HDF5Error(.ioFailed, file: path, object: objectPath, "read failed (corrupt or truncated file?)") }
            }
            return (values, shape)
        }
    }
}

/// HDF5 setup: open the library and silence its error printing. In a thread-safe HDF5
/// build (Debian's is) the automatic error printing is a per-thread setting, so it is
/// switched off on the calling thread before every operation, not once per process.
/// The HDF5 C library as this package uses it. libhdf5 may be built without its thread-safe
/// option (Debian's is built with it; others are not), and the error-stack silencing below is
/// per thread; so that readers and writers may be used from any thread (parallel
/// `reroute verify`, parallel tests) whatever the build, every call into the library from
/// this module runs under one process-wide recursive lock. HDF5 work is serialized; the
/// computations around it run concurrently.
enum HDF5Library {
    private static let once: Void = { H5open() }()
    static let lock = NSRecursiveLock()

    /// Initialises the library once and turns off automatic error printing on this thread.
    static func initialize() {
        _ = once
        H5Eset_auto2(chdf5_e_default(), nil, nil)
    }
}
