// libFuzzer target: the trace reader (HDF5 schema validation) and the trace laws that
// `reroute conform --trace` runs on files from strangers (tools/fuzz.sh), behind the guard
// every command puts before them. libhdf5 itself can crash or spin on some corrupt files
// (Tests/RerouteTests/Fixtures), and C code cannot be made safe from Swift; so, as the CLI
// does (`readingUntrusted`: `reroute __check-file` in a child process, under a watchdog), the
// file is first read in a forked child with default signal handlers and a 5-second alarm.
// Only a file the child read to the end is read here: a crash of this process is then a
// finding in the suite's own code.
import Foundation
import RerouteConformance
import RerouteTrace

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

let scratch = "/dev/shm/reroute-fuzz-trace-\(getpid()).h5"

/// Whether a forked child reads `path` to the end (valid or refused) without a signal or the alarm.
func childReadsCleanly(_ path: String) -> Bool {
    let pid = fork()
    if pid == 0 {
        // The fuzzer's and the sanitizer's handlers would report the child's crash as the parent's.
        for s in [SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE, SIGALRM, SIGTRAP] { signal(s, SIG_DFL) }
        alarm(5)
        _ = try? Trace.read(from: path)
        _exit(0)
    }
    guard pid > 0 else { return false }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0, errno == EINTR {}
    return status == 0  // exited with 0, not killed by a signal
}

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Data(data.map { UnsafeBufferPointer(start: $0, count: size) } ?? UnsafeBufferPointer(start: nil, count: 0))
    guard FileManager.default.createFile(atPath: scratch, contents: bytes), childReadsCleanly(scratch) else { return 0 }
    if let t = try? Trace.read(from: scratch) { _ = checkConformance(trace: t, name: "fuzz") }
    return 0
}

@_cdecl("FuzzTraceReader_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc, v = argv
    return LLVMFuzzerRunDriver(&c, &v, testOneInput)
}
