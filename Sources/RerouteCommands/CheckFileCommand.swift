import ArgumentParser
import Foundation
import RerouteHDF5
import RerouteTrace

/// `reroute __check-file KIND PATH` (hidden): reads a file the way the commands do, in a child
/// process, so that a crash or hang inside libhdf5 cannot take the parent with it
/// (`readingUntrusted`). Exit 0 read, 2 refused cleanly; a signal means libhdf5 crashed.
struct CheckFileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "__check-file", shouldDisplay: false)
    @Argument var kind: String
    @Argument var path: String

    func run() throws {
        switch kind {
        case "trace": _ = try Trace.read(from: path)
        case "case":
            let f = try HDF5File(readingFrom: path)
            _ = try? f.stringAttribute("case")  // `reroute run` reads it too
            _ = try PromptCaseIO.read(f, name: "case")
        default: throw ValidationError("kind: trace or case")
        }
    }
}
