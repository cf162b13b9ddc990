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
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
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
