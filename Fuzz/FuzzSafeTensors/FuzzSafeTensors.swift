// libFuzzer target: the safetensors header parser and tensor conversion (tools/fuzz.sh).
// Any input must give a value or an InputError: never a crash, hang or huge allocation.
import Foundation
import RerouteModel

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// The parser maps files, so each input is written to a per-process file in /dev/shm.
let scratch = "/dev/shm/reroute-fuzz-safetensors-\(getpid()).safetensors"

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Data(data.map { UnsafeBufferPointer(start: $0, count: size) } ?? UnsafeBufferPointer(start: nil, count: 0))
    guard FileManager.default.createFile(atPath: scratch, contents: bytes) else { return 0 }
    if let file = try? SafeTensorsFile(path: scratch) {
        for name in file.tensors.keys.sorted() { _ = try? file.floats(name) }
    }
    return 0
}

// SwiftPM links executables with `main` defined as `<module>_main`; libFuzzer's driver runs from here.
@_cdecl("FuzzSafeTensors_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc, v = argv
    return LLVMFuzzerRunDriver(&c, &v, testOneInput)
}
