import ArgumentParser
import CBLAS
import CHDF5
import Foundation
import RerouteFast

struct EnvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env",
        abstract: "Print the numerical libraries this build uses (HDF5, OpenBLAS), the vector paths of this CPU and its cores.",
        discussion: HelpText.reflowed("""
            vector paths: the CPU's widest (AVX-512 F/BW/VL, AVX2+FMA, or portable), every path it
            supports, and the one the fast decoder uses: REROUTE_ISA=portable|avx2|avx512 forces a
            narrower one (a path the CPU lacks is refused, exit 2).
            """))

    func run() throws {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        H5get_libversion(&major, &minor, &release)
        print("HDF5       \(major).\(minor).\(release)")
        if let config = openblas_get_config() { print("OpenBLAS   \(String(cString: config))") }
        if let core = openblas_get_corename() { print("BLAS core  \(String(cString: core))") }
        print("BLAS threads \(openblas_get_num_threads())")
        print("cores      \(ProcessInfo.processInfo.activeProcessorCount)")
        print("CPU        \(cpuModelName() ?? "unknown")")
        print("vector     widest \(VectorISA.widest.rawValue); supported \(VectorISA.supported.map(\.rawValue).joined(separator: ", ")); "
              + "fast decoder \(VectorISA.standard.rawValue)"
              + (ProcessInfo.processInfo.environment[VectorISA.environmentVariable] != nil ? " (from \(VectorISA.environmentVariable))" : ""))
    }
}

/// The CPU's model name, family and model (`/proc/cpuinfo`), when the system says.
func cpuModelName() -> String? {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
    func field(_ key: String) -> String? {
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == key { return parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return nil
    }
    guard let name = field("model name") else { return nil }
    guard let family = field("cpu family"), let model = field("model") else { return name }
    return "\(name) (family \(family), model \(model))"
}
