// libFuzzer target: the command-line argument surface (tools/fuzz.sh). The bytes are split at
// NUL into arguments, as `reroute ARG…` would receive them. Every argument vector must parse
// and validate, or end the way the CLI ends it: exit 0 with help text, or exit 2 with a message
// in the suite's voice (`reroute: error: …`), never a trap. Commands that only read files and
// print (ReadOnlyCommand: budget, policy, inspect, env) are then run too, and must succeed or
// fail the same way; the others are parsed and validated only (they write files or start
// processes). Standard output goes to /dev/null.
import ArgumentParser
import Foundation
import RerouteCommands

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// The CLI's own ending for `error`, required to be one the CLI documents.
func checkEnding(_ error: Error, _ arguments: [String], ran: Bool) {
    let ending = RerouteCommand.ending(for: error, arguments: arguments)
    switch ending.code {
    case 0:
        precondition(!ran, "a command run ended with exit 0 by an error: \(arguments)")
    case 1 where ran:
        break  // differences found: the command printed its own verdict
    case 2:
        if let message = ending.message {
            precondition(message.hasPrefix("reroute: error: "), "message not in the suite's voice for \(arguments): \(message)")
        }
    default:
        preconditionFailure("exit code \(ending.code) for \(arguments)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let arguments = bytes.split(separator: 0, omittingEmptySubsequences: false).prefix(24).map { String(decoding: $0, as: UTF8.self) }
    let command: ParsableCommand
    do { command = try RerouteCommand.parseAsRoot(arguments) } catch {
        checkEnding(error, arguments, ran: false)
        return 0
    }
    guard var readOnly = command as? any ReadOnlyCommand else { return 0 }
    do { try readOnly.run() } catch { checkEnding(error, arguments, ran: true) }
    return 0
}

@_cdecl("FuzzCommandLine_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    let null = open("/dev/null", O_WRONLY)
    if null >= 0 { dup2(null, STDOUT_FILENO) }
    var c = argc, v = argv
    return LLVMFuzzerRunDriver(&c, &v, testOneInput)
}
