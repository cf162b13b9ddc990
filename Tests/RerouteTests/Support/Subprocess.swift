import Foundation

/// The one way tests run a program: outputs go to files (a full pipe can never block the
/// child or the test), and a child still running at the deadline is killed with SIGKILL.
enum Subprocess {
    struct Outcome {
        var status: Int32
        /// Ended by a signal (a crash, or our SIGKILL at the deadline).
        var signaled: Bool
        /// Killed at the deadline.
        var timedOut: Bool
        var out: String
        var err: String
    }

    /// The `reroute` binary of this build (the test bundle and the executable share a folder).
    static let reroute: URL = {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while dir.path != "/" {
            dir.deleteLastPathComponent()
            let candidate = dir.appendingPathComponent("reroute")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        return Repo.root.appendingPathComponent(".build/debug/reroute")
    }()

    /// Runs `executable` (default: `reroute`) with `args` from the repository root.
    ///
    /// - Parameters:
    ///   - deadline: seconds before SIGKILL.
    ///   - poll: how often the deadline is checked.
    ///   - environment: variables added to this process's environment.
    ///   - captureOutput: false sends both outputs to /dev/null (crash-safety trials).
    static func run(_ args: [String], executable: URL = reroute, deadline: TimeInterval = 600, poll: TimeInterval = 0.01,
                    environment: [String: String] = [:], captureOutput: Bool = true) throws -> Outcome {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("reroute-subprocess-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let outURL = dir.appendingPathComponent("stdout"), errURL = dir.appendingPathComponent("stderr")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        defer {
            try? out.close()
            try? err.close()
        }
        let p = Process()
        p.executableURL = executable
        p.arguments = args
        p.currentDirectoryURL = Repo.root
        if !environment.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        p.standardOutput = captureOutput ? out : FileHandle.nullDevice
        p.standardError = captureOutput ? err : FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let end = Date().addingTimeInterval(deadline)
        while p.isRunning, Date() < end { Thread.sleep(forTimeInterval: poll) }
        let timedOut = p.isRunning
        if timedOut { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        return Outcome(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal, timedOut: timedOut,
                       out: String(decoding: (try? Data(contentsOf: outURL)) ?? Data(), as: UTF8.self),
                       err: String(decoding: (try? Data(contentsOf: errURL)) ?? Data(), as: UTF8.self))
    }
}
