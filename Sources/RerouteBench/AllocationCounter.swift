import CRerouteAllocationCounter
import Foundation

/// Heap allocations of the whole process (every thread, every library) while a body runs,
/// counted by the forwarding allocator of `CRerouteAllocationCounter`, which is linked into
/// this executable. One count is one call of malloc, calloc, realloc, memalign,
/// posix_memalign or aligned_alloc.
public enum AllocationCounter {
    /// Whether the counting allocator receives the Swift runtime's allocations (it does when the
    /// dynamic linker binds libswiftCore's malloc to this executable's, as on glibc).
    public static let isActive: Bool = {
        reroute_allocations_start()
        let p = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 64)  // swift_slowAlloc in libswiftCore
        memset(p, 1, 4096)
        let probe = p.load(as: UInt8.self)
        p.deallocate()
        return reroute_allocations_stop() > 0 && probe == 1
    }()

    /// `body`'s result and the allocations made meanwhile (nil when counting is not active).
    /// Not reentrant: the counter is process-wide.
    public static func counting<T>(_ body: () throws -> T) rethrows -> (result: T, allocations: Int?) {
        guard isActive else { return (try body(), nil) }
        reroute_allocations_start()
        let result: T
        do { result = try body() } catch { _ = reroute_allocations_stop(); throw error }
        return (result, reroute_allocations_stop())
    }
}
