// libFuzzer target: the trace reader (HDF5 schema validation) and the trace laws that
// `reroute conform --trace` runs on files from strangers (tools/fuzz.sh).
import Foundation
import RerouteConformance
import RerouteTrace

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

let scratch = "/dev/shm/reroute-fuzz-trace-\(getpid()).h5"

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Data(data.map { UnsafeBufferPointer(start: $0, count: size) } ?? UnsafeBufferPointer(start: nil, count: 0))
    guard FileManager.default.createFile(atPath: scratch, contents: bytes) else { return 0 }
    if let t = try? Trace.read(from: scratch) { _ = checkConformance(trace: t, name: "fuzz") }
    return 0
}

@_cdecl("FuzzTraceReader_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc, v = argv
    return LLVMFuzzerRunDriver(&c, &v, testOneInput)
}
