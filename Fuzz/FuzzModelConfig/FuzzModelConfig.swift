// libFuzzer target: the config.json parser (tools/fuzz.sh). Any input must give a config or
// an InputError; a parsed config must be usable (its derived shapes computed without traps).
import Foundation
import RerouteModel

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Data(data.map { UnsafeBufferPointer(start: $0, count: size) } ?? UnsafeBufferPointer(start: nil, count: 0))
    if let c = try? ModelConfig.parse(json: bytes, file: "fuzz/config.json") {
        _ = (c.queryWidth, c.kvWidth, c.groupSize, c.ropeFrequencyAxes)
    }
    return 0
}

@_cdecl("FuzzModelConfig_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc, v = argv
    return LLVMFuzzerRunDriver(&c, &v, testOneInput)
}
