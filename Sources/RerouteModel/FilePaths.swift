#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The one validation layer for paths: every input must be a regular file (or a folder where
/// one is expected), refused at once otherwise — a FIFO would block the reader forever, a
/// device stream without end — and every output must touch no input.
public enum FilePaths {
    /// What `path` is, for messages ("a FIFO", "a directory", …); nil when it does not exist.
    public static func kind(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "a special file"
        }
    }

    /// Throws unless `path` is an existing regular file (symbolic links are followed).
    public static func requireRegularFile(_ path: String) throws {
        guard let k = kind(path) else { throw InputError(.fileNotFound, file: path, "no such file") }
        guard k == "a regular file" else { throw InputError(.unreadable, file: path, "is \(k), not a regular file") }
    }

    /// The bytes of a small input file (a config, an index, a policy file, a report): a
    /// regular file of at most `maxBytes` bytes, both checked before anything is read;
    /// `what` names it in the message ("a policy file").
    public static func readSmall(_ path: String, maxBytes: Int, what: String) throws -> Data {
        try requireRegularFile(path)
        var st = stat()
        guard stat(path, &st) == 0 else { throw InputError(.unreadable, file: path, "cannot read: \(String(cString: strerror(errno)))") }
        guard Int(st.st_size) <= maxBytes else {
            throw InputError(.outOfRange, file: path, "\(st.st_size) bytes; \(what) has at most \(maxBytes)")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw InputError(.unreadable, file: path, "cannot read: \(String(cString: strerror(errno)))")
        }
        return data
    }

    /// Throws unless `path` is an existing directory.
    public static func requireDirectory(_ path: String) throws {
        guard let k = kind(path) else { throw InputError(.fileNotFound, file: path, "no such folder") }
        guard k == "a directory" else { throw InputError(.unreadable, file: path, "is \(k), not a folder") }
    }

    /// The absolute path with symbolic links resolved as far as it exists.
    public static func resolved(_ path: String) -> String {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        if let r = realpath(url.path, nil) {
            defer { free(r) }
            return String(cString: r)
        }
        let parent = resolved(url.deletingLastPathComponent().path)
        return parent == "/" ? "/" + url.lastPathComponent : parent + "/" + url.lastPathComponent
    }

    /// Checks that `output` may be written: it is none of `inputs` and lies in none of
    /// `folders` (model folders: their files are inputs too), even with `overwrite`; it does
    /// not exist unless `overwrite`, and then is a regular file; its folder exists; its name
    /// fits the file system (`NAME_MAX`, leaving room for the writer's temporary name).
    public static func checkOutput(_ output: String, inputs: [String] = [], folders: [String] = [], overwrite: Bool) throws {
        let out = resolved(output)
        for i in inputs where resolved(i) == out {
            throw InputError(.badValue, file: output, "is an input of this command (\(i)); choose another output")
        }
        for f in folders {
            let folder = resolved(f)
            if out == folder || out.hasPrefix(folder.hasSuffix("/") ? folder : folder + "/") {
                throw InputError(.badValue, file: output, "lies in the model folder \(f); outputs never go into a model folder")
            }
        }
        let name = URL(fileURLWithPath: output).lastPathComponent
        if name.utf8.count > 255 { throw InputError(.badValue, file: output, "the file name is longer than 255 bytes") }
        let parent = URL(fileURLWithPath: out).deletingLastPathComponent().path
        guard kind(parent) == "a directory" else { throw InputError(.fileNotFound, file: output, "the folder \(parent) does not exist") }
        if let k = kind(output) {
            guard overwrite else { throw InputError(.badValue, file: output, "exists; pass --overwrite to replace it") }
            guard k == "a regular file" else { throw InputError(.badValue, file: output, "is \(k); only a regular file is replaced") }
        }
    }
}
