import ArgumentParser
import Foundation
import RerouteModel
import RerouteVerify

/// `reroute report merge SHARD.json…`: the shards of a sharded `reroute verify` as one report.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Merge the JSON reports of a sharded `reroute verify`.", subcommands: [Merge.self])

    struct Merge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Merge shard reports into the report of an unsharded run; exit 0 all passed, 1 a check failed, 2 error.",
            discussion: HelpText.reflowed("""
                Every shard 0 … N−1 of one split must be given exactly once (a missing or repeated shard
                is an error). Prints the same tables and summary as the unsharded `reroute verify`
                (its time: the longest shard's), or with --json the same JSON.
                """))
        @Argument(help: "Shard reports (written by `reroute verify --shard I/N --report FILE`).") var reports: [String]
        @Flag(help: "Print the merged JSON report (reroute.verify v2).") var json = false
        @Flag(name: .shortAndLong, help: "List passing tensors too.") var verbose = false

        func validate() throws {
            if reports.isEmpty { throw ValidationError("give the shard reports to merge") }
        }

        func run() throws {
            let loaded = try reports.map { f -> (file: String, report: VerifyReportData) in
                (f, try VerifyReportData.read(try FilePaths.readSmall(f, maxBytes: 1 << 30, what: "a verify report"), file: f))
            }
            let merged = try VerifyReportData.merge(loaded)
            print(json ? try merged.json() : merged.render(verbose: verbose))
            if !merged.passed { throw ExitCode(1) }
        }
    }
}
