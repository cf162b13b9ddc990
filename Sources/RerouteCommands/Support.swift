import ArgumentParser
import Foundation
import RerouteModel
import RerouteTrace
import RerouteVerify

/// `ROWSxCOLS` or `FRAMESxROWSxCOLS` on the command line (`ImageGrid(parsing:)`, the one grid syntax).
extension ImageGrid: ExpressibleByArgument {
    public init?(argument: String) { self.init(parsing: argument) }
    public var defaultValueDescription: String { description }
}

extension DecoderKind: ExpressibleByArgument {}
extension GoldenRegeneration.GoldenSet: ExpressibleByArgument {}

/// `I/N` on the command line.
extension Shard: ExpressibleByArgument {
    public init?(argument: String) { self.init(parsing: argument) }
}

/// Writes `text` to `path` atomically (a temporary file beside it, then rename); an existing
/// file is replaced only with `overwrite`.
func writeAtomically(_ text: String, to path: String, overwrite: Bool) throws {
    let url = URL(fileURLWithPath: path)
    try FilePaths.checkOutput(path, overwrite: overwrite)
    do { try Data(text.utf8).write(to: url, options: .atomic) } catch {
        throw InputError(.unreadable, file: path, "cannot write: \(error.localizedDescription)")
    }
}
extension ComparisonPreset: ExpressibleByArgument {}

/// The git commit of the working directory's repository, "+dirty" when it has changes;
/// "unknown" outside a repository or without git.
func gitCommit() -> String {
    func git(_ args: [String]) -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["git"] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
    guard let head = git(["rev-parse", "HEAD"]), !head.isEmpty else { return "unknown" }
    let dirty = !(git(["status", "--porcelain", "--untracked-files=no"]) ?? "").isEmpty
    return head + (dirty ? "+dirty" : "")
}


/// Reads `path`, an HDF5 file from outside, safely. libhdf5 itself can crash or loop on some
/// corrupt files (fuzzing found both: a damaged global heap behind a string attribute makes
/// H5Aread read out of bounds or spin for minutes), and C code can be neither interrupted nor
/// made safe from Swift. So the file is first read in a child process (`reroute
/// __check-file KIND PATH`, the same reader); if that child is killed by a signal or does not
/// finish within `REROUTE_READ_TIMEOUT` seconds (default 60), the file is refused with exit
/// code 2 and a message naming it. Otherwise `body` reads it here, still under a watchdog.
func readingUntrusted<T>(_ path: String, kind: String = "trace", _ body: () throws -> T) throws -> T {
    let seconds = Double(ProcessInfo.processInfo.environment["REROUTE_READ_TIMEOUT"] ?? "") ?? 60
    func refuse(_ why: String) -> Never {
        FileHandle.standardError.write(Data("reroute: error: \(path): \(why); the HDF5 library cannot read this file safely (it is probably corrupt)\n".utf8))
        // _exit: libhdf5's exit handlers would wait for the library, which may be stuck in another thread.
        _exit(2)
    }
    let child = Process()
    child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
    if !FileManager.default.isExecutableFile(atPath: child.executableURL!.path) {
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    }
    child.arguments = ["__check-file", kind, path]
    child.standardOutput = FileHandle.nullDevice
    child.standardError = FileHandle.nullDevice
    try child.run()
    let deadline = Date().addingTimeInterval(seconds)
    while child.isRunning, Date() < deadline { usleep(2000) }
    if child.isRunning {
        kill(child.processIdentifier, SIGKILL)
        refuse("reading did not finish within \(Int(seconds)) s")
    }
    if child.terminationReason == .uncaughtSignal { refuse("reading it crashed a child process (signal \(child.terminationStatus))") }
    // A clean failure (exit 2) is reported by `body` below, with its own message.
    let timer = DispatchSource.makeTimerSource(queue: .global())
    timer.schedule(deadline: .now() + seconds)
    timer.setEventHandler { refuse("reading did not finish within \(Int(seconds)) s") }
    timer.resume()
    defer { timer.cancel() }
    return try body()
}

/// Progress of a layer-by-layer run on standard error: silent for the first 2 seconds (small
/// runs print nothing), then a line per layer with the time so far and an estimate of the rest.
final class LayerProgress {
    let label: String, layers: Int
    let start = Date()
    init(_ label: String, layers: Int) { self.label = label; self.layers = layers }

    func layerDone(_ l: Int) {
        let elapsed = Date().timeIntervalSince(start)
        guard elapsed >= 2 else { return }
        let left = elapsed / Double(l + 1) * Double(layers - l - 1)
        progress(String(format: "%@: layer %d/%d done, %@ so far, about %@ left", label, l + 1, layers, duration(elapsed), duration(left)))
    }

    func duration(_ s: Double) -> String {
        s < 90 ? String(format: "%.0f s", s) : String(format: "%d min %02d s", Int(s) / 60, Int(s) % 60)
    }
}

/// `--weights f32|mapped-bf16`.
enum WeightStorageOption: String, ExpressibleByArgument, CaseIterable {
    case f32, mappedBF16 = "mapped-bf16"
    var storage: WeightStorage { self == .f32 ? .float32 : .mappedBF16 }
}

/// A trace from outside, read safely (`readingUntrusted`); a trace without `/budget` gets the
/// budget of its processed sets, and standard error says so.
func readTrace(_ file: String) throws -> Trace {
    let t = try readingUntrusted(file) { try Trace.read(from: file) }
    if t.budgetComputed {
        progress("reroute: note: \(file) has no /budget; computed from its config and processed sets (SPEC.md §9.1)")
    }
    return t
}
