import ArgumentParser
import Foundation
import Testing
import RerouteCommands

/// The argument surface in-process, as the command-line fuzzer drives it: every argument
/// vector parses, or ends as the CLI documents (exit 0 with help text; exit 2 with a message
/// that starts `reroute: error: ` and names the option or value at fault).
@Suite struct CommandLineSurfaceTests {
    static let hostile: [([String], String)] = [
        (["run", "--bogus"], "unknown option '--bogus' for 'reroute run'"),
        (["budget", "--grid", "4000000000x4000000000"], "--grid"),
        (["budget", "--grid", "99999x99999"], "--grid"),
        (["budget", "--text-tokens", "9223372036854775807"], "--text-tokens"),
        (["budget", "--text-tokens", "65536", "--grid", "24x24"], "--text-tokens plus the grid's tokens"),
        (["budget", "--kv-bytes", "-9223372036854775808"], "--kv-bytes"),
        (["budget", "--kv-bytes", "99999999999999999999"], "--kv-bytes"),
        (["time", "--model", "m", "--case", "c", "--threads", "100000"], "--threads"),
        (["verify", "--shard", "3/2"], "--shard"),
        (["verify", "--shard", "-1/-1"], "--shard"),
        (["diff", "a", "b", "--max-reported", "-1"], "--max-reported"),
        (["nosuchcommand"], "nosuchcommand"),
        (["policy", "show"], "name"),
        (["budget", "--grid"], "--grid"),
        (["", "\u{0}", "--"], "unexpected arguments"),
    ]

    @Test(arguments: 0..<hostile.count)
    func parseFailuresEndInTheSuitesVoice(index: Int) {
        let (arguments, named) = Self.hostile[index]
        do {
            _ = try RerouteCommand.parseAsRoot(arguments)
            Issue.record("\(arguments) parsed")
        } catch {
            let ending = RerouteCommand.ending(for: error, arguments: arguments)
            #expect(ending.code == 2, "\(arguments): exit \(ending.code)")
            #expect(ending.message?.hasPrefix("reroute: error: ") == true && ending.message!.contains(named), "\(arguments): \(ending.message ?? "nil")")
        }
    }

    /// Help and version end with exit 0 and their text; a read-only command's own error
    /// (a missing config) ends with exit 2 naming the file.
    @Test func helpVersionAndRunErrors() throws {
        for arguments in [["--help"], ["budget", "--help"], ["--version"], ["help", "run"]] {
            do {
                var command = try RerouteCommand.parseAsRoot(arguments)
                try command.run()
                Issue.record("\(arguments) did not end")
            } catch {
                let ending = RerouteCommand.ending(for: error, arguments: arguments)
                #expect(ending.code == 0 && ending.message?.isEmpty == false, "\(arguments)")
            }
        }
        var budget = try RerouteCommand.parseAsRoot(["budget", "--config", "/nonexistent/config.json"])
        #expect(budget is any ReadOnlyCommand)
        #expect(throws: (any Error).self) { try budget.run() }
        do { try budget.run() } catch {
            let ending = RerouteCommand.ending(for: error, arguments: [])
            #expect(ending.code == 2 && ending.message?.hasPrefix("reroute: error: /nonexistent/config.json") == true, "\(ending)")
        }
        #expect(!(try RerouteCommand.parseAsRoot(["run", "--model", "m", "--case", "c", "--out", "o", "--policy", "fastv"]) is any ReadOnlyCommand))
    }
}
