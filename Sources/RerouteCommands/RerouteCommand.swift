import ArgumentParser
import Foundation
import RerouteFast
import RerouteHDF5
import RerouteModel
import RerouteRouting
import RerouteVerify

/// `reroute`: the suite's command line. Exit codes are fixed (as h5diff's):
/// 0 = everything matched, 1 = differences found, 2 = error (bad input, bad usage).
public struct RerouteCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "reroute",
        abstract: "Reference-model verification suite for visual-token routing in VLMs.",
        discussion: HelpText.reflowed("""
            Exit codes: 0 = checks passed, 1 = differences found, 2 = error (bad input or usage).
            See SPEC.md for the model math, the tolerances and the file formats.
            """),
        version: "0.1.0",
        subcommands: [CheckFileCommand.self, VerifyCommand.self, RunCommand.self, DiffCommand.self, PolicyCommand.self, CheckLayersCommand.self, ReportCommand.self, ShowCommand.self, RoutesCommand.self, BudgetCommand.self,
                      ConformCommand.self, BenchCommand.self, TimeCommand.self, GoldenCommand.self, InspectCommand.self, EnvCommand.self])

    public init() {}

    public static func main() {
        // Process-wide settings are chosen here, once: the fast decoder splits its work over its
        // own workers and expects single-threaded OpenBLAS (BLASThreads).
        BLASThreads.set(1)
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            // A bad REROUTE_ISA stops every command before it runs (the fast decoder's default path reads it).
            _ = try VectorISA.requested()
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch {
            let ending = ending(for: error, arguments: arguments)
            if let message = ending.message {
                if ending.code == 0 { print(message) } else { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            }
            Foundation.exit(ending.code)
        }
    }

    /// How the command line ends for an error thrown while parsing or running `arguments`: the
    /// exit code (0 for `--help`/`--version`, whose text is the message, else 1 or 2) and the
    /// message, which for every failure starts with `reroute: error: `. `nil` when the command
    /// already printed its own verdict and only sets the code.
    public static func ending(for error: Error, arguments: [String]) -> (code: Int32, message: String?) {
        switch error {
        case let code as ExitCode: return (code.rawValue, nil)
        case let error as InputError: return (2, "reroute: error: \(error.description)")
        case let error as HDF5Error: return (2, "reroute: error: \(error.description)")
        case let error as RoutingError: return (2, "reroute: error: \(error.description)")
        case let error as VerifyError: return (2, "reroute: error: \(error.description)")
        case let error as VectorISAError: return (2, "reroute: error: \(error.description)")
        default:
            if exitCode(for: error) == .success { return (0, fullMessage(for: error)) }
            return (2, usageMessage(for: error, arguments: arguments))
        }
    }

    /// A usage error in the suite's voice (`reroute: error: …`). The argument parser reports a
    /// missing option or a failed validation before an unknown option, so `run --bogus` would
    /// say "missing --model": an option the (sub)command does not have is reported first.
    public static func usageMessage(for error: Error, arguments: [String]) -> String {
        var message = fullMessage(for: error)
        if let unknown = unknownOption(in: arguments) {
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

}

/// Writes a progress line to standard error (standard output stays machine-readable).
func progress(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
