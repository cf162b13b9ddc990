#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory mapping of a whole file.
///
/// Checkpoints are mapped, not read, so a real-size model costs address space rather
/// than a copy; pages are read on first touch.
final class MappedFile: Sendable {
    let path: String
    let size: Int
    /// The mapping is read-only (PROT_READ) and lives as long as this object: sharing the
    /// pointer across threads is safe.
    private let mapping: UncheckedShared<UnsafeMutableRawPointer?>
    private var base: UnsafeMutableRawPointer? { mapping.value }

    init(path: String) throws {
        self.path = path
        // Before open(): opening a FIFO blocks until a writer comes.
        try FilePaths.requireRegularFile(path)
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            let kind: InputError.Kind = errno == ENOENT ? .fileNotFound : .unreadable
            throw InputError(kind, file: path, String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw InputError(.unreadable, file: path, String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw InputError(.unreadable, file: path, "not a regular file") }
        size = Int(st.st_size)
        if size == 0 {
            mapping = UncheckedShared(nil)
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw InputError(.unreadable, file: path, "mmap failed: \(String(cString: strerror(errno)))") }
        mapping = UncheckedShared(p)
    }

    deinit {
        if let base { munmap(base, size) }
    }

    /// The mapped bytes; `range` must lie inside the file (callers validate first).
    func withBytes<R>(_ range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        precondition(range.lowerBound >= 0 && range.upperBound <= size, "MappedFile: range \(range) outside \(size) bytes")
        guard let base else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count))
    }
}
