import CRerouteKernels
import Foundation

/// The vector path the fast decoder's own kernels run (`CRerouteKernels`): the packed-weight
/// GEMM, the attention kernel and the exp-bound elementwise kernels. OpenBLAS chooses its own kernels (by its core
/// type, which the environment may set and the suite never changes).
///
/// Order: `portable < avx2 < avx512`. A CPU supports every path up to its widest
/// (`VectorISA.widest`); a narrower one may be forced (`FastDecoderOptions.isa`, or
/// `REROUTE_ISA` for the command line), so one machine tests every path it has. For a fixed
/// path and thread count the decoder is bitwise reproducible; across paths results differ by
/// rounding only, within the fast decoder's tolerance (SPEC.md §10.1, §10.3).
public enum VectorISA: String, Sendable, CaseIterable, Comparable, Codable {
    /// The x86-64 baseline: OpenBLAS for every product (attention included), scalar `expf`.
    case portable
    /// AVX2 + FMA: the packed-weight 6×16 FMA kernel for few-row products and attention,
    /// libmvec's 8-lane expf.
    case avx2
    /// AVX-512 F/BW/VL: the packed-weight 12×32 FMA kernel for every projection and attention,
    /// libmvec's 16-lane expf.
    case avx512

    /// The `REROUTE_ISA_*` constant of `CRerouteKernels`.
    public var code: Int32 {
        switch self {
        case .portable: REROUTE_ISA_PORTABLE
        case .avx2: REROUTE_ISA_AVX2
        case .avx512: REROUTE_ISA_AVX512
        }
    }

    public static func < (a: VectorISA, b: VectorISA) -> Bool { a.code < b.code }

    /// The widest path this CPU and OS support (CPUID and XCR0), probed once.
    public static let widest: VectorISA = {
        switch reroute_isa_widest() {
        case REROUTE_ISA_AVX512: .avx512
        case REROUTE_ISA_AVX2: .avx2
        default: .portable
        }
    }()

    /// The default path of `FastDecoderOptions`: the one `REROUTE_ISA` asks for, else the
    /// widest (read once; `reroute` refuses a bad value before any command runs).
    public static let standard: VectorISA = (try? requested()).flatMap { $0 } ?? widest

    /// Every path this CPU supports, narrowest first.
    public static var supported: [VectorISA] { allCases.filter { $0 <= widest } }

    /// The environment variable that forces a narrower path for the command line.
    public static let environmentVariable = "REROUTE_ISA"

    /// The path `REROUTE_ISA` asks for (nil: unset, the widest is used). Throws when the value
    /// is not a path name, or names a path this CPU lacks.
    public static func requested(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> VectorISA? {
        guard let raw = environment[environmentVariable] else { return nil }
        return try parse(raw, source: "\(environmentVariable)=\(raw)")
    }

    /// A path by name, checked against this CPU; `source` names where the name came from.
    public static func parse(_ raw: String, source: String) throws -> VectorISA {
        guard let isa = VectorISA(rawValue: raw) else {
            throw VectorISAError(message: "\(source): not a vector path; expected one of \(allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard isa <= widest else {
            throw VectorISAError(message: "\(source): this CPU supports only \(supported.map(\.rawValue).joined(separator: ", ")) (widest \(widest.rawValue))")
        }
        return isa
    }
}

/// A vector path that cannot be used (a bad name, or one this CPU lacks).
public struct VectorISAError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}
