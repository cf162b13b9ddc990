import ArgumentParser
import CBLAS
import CHDF5
import Foundation

struct EnvCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env",
        abstract: "Print the numerical libraries this build uses (HDF5, OpenBLAS) and the machine's cores.")

    func run() throws {
        var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
        H5get_libversion(&major, &minor, &release)
        print("HDF5       \(major).\(minor).\(release)")
        if let config = openblas_get_config() { print("OpenBLAS   \(String(cString: config))") }
        if let core = openblas_get_corename() { print("BLAS core  \(String(cString: core))") }
        print("BLAS threads \(openblas_get_num_threads())")
        print("cores      \(ProcessInfo.processInfo.activeProcessorCount)")
    }
}
