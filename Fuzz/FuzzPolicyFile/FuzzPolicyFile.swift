// libFuzzer target: the policy-file parser (tools/fuzz.sh). Any input must give a policy or
// an error; a parsed policy must schedule on models of several depths (or refuse with an
// error) and round-trip through its file form to an equal policy.
import Foundation
import RerouteRouting

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Data(data.map { UnsafeBufferPointer(start: $0, count: size) } ?? UnsafeBufferPointer(start: nil, count: 0))
    guard let p = try? PolicyFile.decode(bytes, file: "fuzz/policy.json") else { return 0 }
    for layers in [1, 2, 8, 28, 32, 80] {
        for n in [1, 576] { _ = try? p.schedule(layers: layers, originalN: n, llmN: n) }
        _ = try? PolicyFile.check(p, layers: layers, file: "fuzz/policy.json")
    }
    guard let again = try? PolicyFile.decode(Data(PolicyFile.encode(p).utf8), file: "fuzz/again.json") else {
        fatalError("a parsed policy does not parse from its own file form")
    }
    if PolicyFile.encode(again) != PolicyFile.encode(p) { fatalError("the file form does not round-trip") }
    return 0
}

@_cdecl("FuzzPolicyFile_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc, v = argv
    return LLVMFuzzerRunDriver(&c, &v, testOneInput)
}
