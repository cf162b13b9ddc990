// libFuzzer target: prompt-case validation (tools/fuzz.sh). The bytes are read as little-
// endian Int64 fields (token counts and ids, grid, positions and their axes, decode steps,
// visual width and kind, grid indices): arbitrary integers, as a hostile case file can hold.
// Validation against a fixed config must return or throw, never trap; a case it accepts
// must give its derived values (span, sequence length, decode positions) without traps.
import Foundation
import RerouteModel

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

let config = ModelConfig(family: .qwen2, hiddenSize: 16, layers: 4, heads: 2, kvHeads: 1, intermediateSize: 8, rmsNormEps: 1e-6,
                         ropeTheta: 10000, vocabSize: 64, tieWordEmbeddings: true, mropeSection: [2, 3, 3])
let projector = ProjectorWeights(linear1: Matrix(rows: 16, cols: 4, values: [Float](repeating: 0, count: 64)), bias1: nil,
                                 linear2: Matrix(rows: 16, cols: 16, values: [Float](repeating: 0, count: 256)), bias2: nil)

struct Reader {
    var bytes: [UInt8], at = 0
    /// The next field; small lengths come from the low bits so that most inputs have a shape.
    mutating func next() -> Int {
        var v: UInt64 = 0
        for k in 0..<8 where at + k < bytes.count { v |= UInt64(bytes[at + k]) << (8 * UInt64(k)) }
        at += 8
        return Int(truncatingIfNeeded: v)
    }
    mutating func length(_ cap: Int) -> Int { Int(UInt(bitPattern: next()) % UInt(cap + 1)) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var r = Reader(bytes: Array(UnsafeBufferPointer(start: data, count: size)))
    let prefix = (0..<r.length(8)).map { _ in r.next() }
    let suffix = (0..<r.length(8)).map { _ in r.next() }
    let grid = ImageGrid(rows: r.next(), cols: r.next())
    let n = r.length(12), width = r.length(20)
    let matrix = Matrix(rows: n, cols: width, values: [Float](repeating: 0.5, count: n * width))
    let visual: VisualInput = r.next() & 1 == 0 ? .features(matrix) : .embeddings(matrix)
    let axes = r.next() & 1 == 0 ? 1 : 3
    let count = r.length(40)
    let positions = PositionIDs(axes: (0..<axes).map { _ in (0..<count).map { _ in r.next() } })
    let steps = r.next()
    let indices: [Int]? = r.next() & 3 == 0 ? (0..<r.length(12)).map { _ in r.next() } : nil
    var c = PromptCase(name: "fuzz", prefixTokens: prefix, suffixTokens: suffix, visual: visual, grid: grid,
                       positions: positions, decodeSteps: steps)
    c.visualGridIndices = indices
    guard (try? c.validate(for: config, projector: projector, file: "fuzz/case.h5")) != nil else { return 0 }
    let top = c.positions.axes.joined().max() ?? 0
    _ = (c.visualSpan, c.sequenceLength, top + c.decodeSteps + 1, c.grid.count)
    for i in 0..<c.sequenceLength { _ = config.ropePositions(c.positions, token: i) }
    return 0
}

@_cdecl("FuzzPromptCase_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc, v = argv
    return LLVMFuzzerRunDriver(&c, &v, testOneInput)
}
