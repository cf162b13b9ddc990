import CBLAS

/// OpenBLAS's thread count, which is process-wide. The program's entry point sets it once
/// (`reroute` sets 1 at start); no decoder changes it. The fast decoder splits every product
/// over its own workers and expects single-threaded OpenBLAS: with more BLAS threads its
/// workers' concurrent calls oversubscribe the cores.
public enum BLASThreads {
    /// The thread count OpenBLAS uses now.
    public static var current: Int { Int(openblas_get_num_threads()) }

    /// Sets OpenBLAS's thread count for the whole process (at least 1).
    public static func set(_ threads: Int) { openblas_set_num_threads(Int32(max(1, min(threads, 1024)))) }
}
