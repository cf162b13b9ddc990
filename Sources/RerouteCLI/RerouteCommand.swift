import ArgumentParser
import Foundation
import RerouteFast
import RerouteHDF5
import RerouteModel
import RerouteRouting
import RerouteVerify

/// `reroute`: the suite's command line. Exit codes are fixed (as h5diff's):
/// 0 = everything matched, 1 = differences found, 2 = error (bad input, bad usage).
@main
struct RerouteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reroute",
        abstract: "Reference-model verification suite for visual-token routing in VLMs.",
        discussion: """
            Exit codes: 0 = checks passed, 1 = differences found, 2 = error (bad input or usage).
            See SPEC.md for the model math, the tolerances and the file formats.
            """,
        version: "0.1.0",
        subcommands: [CheckFileCommand.self, VerifyCommand.self, RunCommand.self, DiffCommand.self, PolicyCommand.self, CheckLayersCommand.self, ReportCommand.self, ShowCommand.self, RoutesCommand.self, BudgetCommand.self,
                      ConformCommand.self, BenchCommand.self, TimeCommand.self, GoldenCommand.self, InspectCommand.self, EnvCommand.self])

    static func main() {
        // Process-wide settings are chosen here, once: the fast decoder splits its work over its
        // own workers and expects single-threaded OpenBLAS (BLASThreads).
        BLASThreads.set(1)
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let code as ExitCode {
            Foundation.exit(code.rawValue)
        } catch let error as InputError {
            fail(error.description)
        } catch let error as HDF5Error {
            fail(error.description)
        } catch let error as RoutingError {
            fail(error.description)
        } catch let error as VerifyError {
            fail(error.description)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))  // --help, --version
                Foundation.exit(0)
            }
            FileHandle.standardError.write(Data((usageMessage(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
    }

    /// A usage error in the suite's voice (`reroute: error: …`). The argument parser reports a
    /// missing option or a failed validation before an unknown option, so `run --bogus` would
    /// say "missing --model": an option the (sub)command does not have is reported first.
    static func usageMessage(for error: Error) -> String {
        var message = fullMessage(for: error)
        if let unknown = unknownOption(in: Array(CommandLine.arguments.dropFirst())) {
            message = "Error: unknown option '\(unknown.option)' for '\(unknown.command)'; see '\(unknown.command) --help'"
        }
        if message.hasPrefix("Error: ") { message = "reroute: error: " + message.dropFirst("Error: ".count) }
        return message
    }

    /// The first `--option` of `args` that the subcommand they name does not declare.
    static func unknownOption(in args: [String]) -> (option: String, command: String)? {
        var command: ParsableCommand.Type = RerouteCommand.self
        var name = "reroute"
        var rest = args[...]
        while let next = rest.first, let sub = command.configuration.subcommands.first(where: { $0._commandName == next }) {
            command = sub
            name += " " + next
            rest = rest.dropFirst()
        }
        let help = helpMessage(for: command)
        let known = Set(help.matches(of: /--[a-z0-9][a-z0-9-]*/).map { String($0.output) }).union(["--help", "--version"])
        for arg in rest {
            if arg == "--" { break }
            guard arg.hasPrefix("--") else { continue }
            let option = String(arg.split(separator: "=", maxSplits: 1)[0])
            if !known.contains(option) { return (option, name) }
        }
        return nil
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("reroute: error: \(message)\n".utf8))
        Foundation.exit(2)
    }
}

/// Writes a progress line to standard error (standard output stays machine-readable).
func progress(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
