import Foundation

/// Element types of the safetensors format.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL
    case F8_E4M3, F8_E5M2

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .F64, .I64, .U64: 8
        case .F32, .I32, .U32: 4
        case .F16, .BF16, .I16, .U16: 2
        case .I8, .U8, .BOOL, .F8_E4M3, .F8_E5M2: 1
        }
    }

    /// Whether `SafeTensorsFile.floats` can widen this type to `Float`.
    public var convertsToFloat: Bool { self == .F32 || self == .F16 || self == .BF16 }
}

/// One tensor's header entry.
public struct TensorInfo: Sendable, Equatable {
    public var name: String
    public var dtype: SafeTensorsDType
    public var shape: [Int]
    /// Byte range inside the data section (after the 8-byte length and the JSON header).
    public var dataRange: Range<Int>
    /// Product of `shape` (1 for a scalar).
    public var elementCount: Int
}

/// A `.safetensors` file: an 8-byte little-endian header length n, n bytes of JSON
/// (`{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}`),
/// then the data section. Offsets are relative to the data section.
///
/// Opening validates everything (SPEC.md §3): header length within the file and at most
/// 100 MB, valid JSON object, known dtype, non-negative integer shape whose element count
/// times the dtype size equals the byte range without overflow, ranges inside the data
/// section, no two tensors overlapping. Any violation is an `InputError` naming the file
/// and the tensor. The file is memory-mapped; `floats` converts on demand.
public final class SafeTensorsFile: Sendable {
    public let path: String
    public let tensors: [String: TensorInfo]
    public let metadata: [String: String]
    private let file: MappedFile
    private let dataStart: Int

    /// Largest header accepted (the reference implementation uses the same 100 MB cap).
    public static let maxHeaderBytes = 100_000_000

    public init(path: String) throws {
        self.path = path
        file = try MappedFile(path: path)
        guard file.size >= 8 else {
            throw InputError(.truncated, file: path, "\(file.size) bytes; a safetensors file starts with an 8-byte header length")
        }
        let headerLength = file.withBytes(0..<8) { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength <= UInt64(Self.maxHeaderBytes) else {
            throw InputError(.badHeader, file: path, "header length \(headerLength) exceeds the \(Self.maxHeaderBytes)-byte limit")
        }
        guard Int(headerLength) <= file.size - 8 else {
            throw InputError(.truncated, file: path, "header length \(headerLength) but only \(file.size - 8) bytes follow")
        }
        dataStart = 8 + Int(headerLength)
        let dataSize = file.size - dataStart
        let headerData = file.withBytes(8..<dataStart) { Data($0) }
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: headerData) } catch {
            throw InputError(.badJSON, file: path, "header is not valid JSON")
        }
        guard let root = json as? [String: Any] else { throw InputError(.badJSON, file: path, "header is not a JSON object") }
        // JSON objects keep the last of repeated keys; the safetensors format (and its Python
        // library) refuses a header that names a tensor twice.
        if let dup = Self.repeatedTopLevelKey(headerData) {
            throw InputError(.duplicateTensor, file: path, object: dup, "named twice in the header")
        }

        var infos: [String: TensorInfo] = [:]
        var meta: [String: String] = [:]
        for (name, value) in root {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw InputError(.badHeader, file: path, object: name, "must be an object of strings")
                }
                for (k, v) in m {
                    guard let s = v as? String else { throw InputError(.badHeader, file: path, object: "__metadata__.\(k)", "not a string") }
                    meta[k] = s
                }
                continue
            }
            infos[name] = try Self.parseEntry(name: name, value: value, dataSize: dataSize, path: path)
        }
        // No overlap: sorted by start, each non-empty range must begin at or after the previous end.
        let sorted = infos.values.filter { !$0.dataRange.isEmpty }.sorted { ($0.dataRange.lowerBound, $0.name) < ($1.dataRange.lowerBound, $1.name) }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.dataRange.lowerBound < a.dataRange.upperBound {
            throw InputError(.overlap, file: path, object: b.name, "bytes \(b.dataRange) overlap '\(a.name)' at \(a.dataRange)")
        }
        tensors = infos
        metadata = meta
    }

    private static func parseEntry(name: String, value: Any, dataSize: Int, path: String) throws -> TensorInfo {
        func bad(_ kind: InputError.Kind, _ why: String) -> InputError { InputError(kind, file: path, object: name, why) }
        guard let entry = value as? [String: Any] else { throw bad(.badHeader, "entry is not an object") }
        guard let dtypeName = entry["dtype"] as? String else { throw bad(.badHeader, "missing dtype") }
        guard let dtype = SafeTensorsDType(rawValue: dtypeName) else { throw bad(.unsupportedDType, "unknown dtype '\(dtypeName)'") }
        guard let shapeAny = entry["shape"] as? [Any] else { throw bad(.badHeader, "missing shape") }
        var shape: [Int] = []
        var count = 1
        var overflow = false
        for dim in shapeAny {
            guard let n = dim as? NSNumber, n.doubleValue == n.doubleValue.rounded(), n.doubleValue >= 0, n.doubleValue < 9.0e18 else {
                throw bad(.badShape, "shape \(shapeAny) must hold non-negative integers")
            }
            let d = n.intValue
            shape.append(d)
            let (p, o) = count.multipliedReportingOverflow(by: d)
            overflow = overflow || o
            count = p
        }
        guard let offsets = entry["data_offsets"] as? [Any], offsets.count == 2,
              let b = offsets[0] as? NSNumber, let e = offsets[1] as? NSNumber,
              b.doubleValue >= 0, e.doubleValue >= 0, b.doubleValue < 9.0e18, e.doubleValue < 9.0e18,
              b.doubleValue == b.doubleValue.rounded(), e.doubleValue == e.doubleValue.rounded() else {
            throw bad(.badHeader, "data_offsets must be two non-negative integers")
        }
        let begin = b.intValue, end = e.intValue
        guard begin <= end else { throw bad(.badHeader, "data_offsets [\(begin), \(end)] are reversed") }
        let (bytes, o2) = count.multipliedReportingOverflow(by: dtype.size)
        if overflow || o2 { throw bad(.badShape, "shape \(shape) has more elements than can be addressed") }
        guard bytes == end - begin else {
            throw bad(.badShape, "shape \(shape) of \(dtype.rawValue) needs \(bytes) bytes but data_offsets span \(end - begin)")
        }
        guard end <= dataSize else {
            throw bad(.outOfRange, "data_offsets [\(begin), \(end)] go past the \(dataSize)-byte data section")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataRange: begin..<end, elementCount: count)
    }

    /// The tensor's header entry, or `missingTensor`.
    public func info(_ name: String) throws -> TensorInfo {
        guard let t = tensors[name] else { throw InputError(.missingTensor, file: path, object: name, "not in this file") }
        return t
    }

    /// A BF16 tensor as a view into the mapping (no copy), or nil for other dtypes.
    func mappedBF16(_ name: String) throws -> MappedBF16? {
        let t = try info(name)
        guard t.dtype == .BF16 else { return nil }
        let range = (dataStart + t.dataRange.lowerBound)..<(dataStart + t.dataRange.upperBound)
        return file.withBytes(range) { raw in
            raw.baseAddress.map { MappedBF16(owner: file, base: $0, count: t.elementCount) }
        }
    }

    /// The tensor's values widened to `Float` (F32 as is; F16 and BF16 exactly).
    public func floats(_ name: String) throws -> [Float] {
        let t = try info(name)
        guard t.dtype.convertsToFloat else {
            throw InputError(.unsupportedDType, file: path, object: name, "\(t.dtype.rawValue) cannot be read as floating point weights")
        }
        let range = (dataStart + t.dataRange.lowerBound)..<(dataStart + t.dataRange.upperBound)
        return file.withBytes(range) { raw in
            var out = [Float](repeating: 0, count: t.elementCount)
            switch t.dtype {
            case .F32:
                for i in 0..<t.elementCount { out[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .BF16:
                for i in 0..<t.elementCount { out[i] = bfloat16ToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            case .F16:
                for i in 0..<t.elementCount { out[i] = float16ToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            default:
                preconditionFailure("unreachable: checked convertsToFloat")
            }
            return out
        }
    }
}

/// bfloat16 is the top half of an IEEE binary32; widening is exact.
@inlinable public func bfloat16ToFloat(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

/// IEEE binary16 to binary32, exact for every input (normals, subnormals, ±0, ±Inf, NaN
/// with its payload shifted into place).
public func float16ToFloat(_ bits: UInt16) -> Float {
    let sign = UInt32(bits & 0x8000) << 16
    let exponent = UInt32(bits >> 10) & 0x1F
    let mantissa = UInt32(bits & 0x3FF)
    if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
    if exponent != 0 { return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13)) }
    // Subnormal or zero: value = mantissa · 2^-24, exact in binary32.
    let magnitude = Float(mantissa) * 0x1p-24
    return sign != 0 ? -magnitude : magnitude
}

extension SafeTensorsFile {
    /// The first key that appears twice at the top level of a JSON object's text (nil: none).
    /// Scans the bytes once, tracking strings and nesting; keys compare by their raw text.
    static func repeatedTopLevelKey(_ data: Data) -> String? {
        var seen = Set<[UInt8]>()
        var depth = 0, inString = false, escaped = false
        var current: [UInt8] = [], lastString: [UInt8]? = nil
        for b in data {
            if inString {
                if escaped { escaped = false; current.append(b); continue }
                if b == UInt8(ascii: "\\") { escaped = true; current.append(b); continue }
                if b == UInt8(ascii: "\"") { inString = false; lastString = current; continue }
                current.append(b)
                continue
            }
            switch b {
            case UInt8(ascii: "\""): inString = true; current = []
            case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1; lastString = nil
            case UInt8(ascii: "}"), UInt8(ascii: "]"): depth -= 1; lastString = nil
            case UInt8(ascii: ":"):
                if depth == 1, let key = lastString, !seen.insert(key).inserted { return String(decoding: key, as: UTF8.self) }
                lastString = nil
            case UInt8(ascii: ","): lastString = nil
            default: break
            }
        }
        return nil
    }
}
