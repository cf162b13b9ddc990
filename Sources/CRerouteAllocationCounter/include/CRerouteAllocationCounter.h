#ifndef REROUTE_ALLOCATION_COUNTER_H
#define REROUTE_ALLOCATION_COUNTER_H

/// Heap-allocation counting for `reroute bench` / `reroute time` (glibc only).
///
/// This target defines malloc, calloc, realloc, memalign, posix_memalign and aligned_alloc,
/// each forwarding to glibc's own (`__libc_malloc`, ...). Linked into an executable, the
/// dynamic linker binds every shared library's calls (the Swift runtime, Foundation,
/// OpenBLAS, libhdf5) to these, so all heap allocations of the process pass through one
/// counter. Counting costs one relaxed atomic load per call while off, and one atomic
/// increment while on. The count is process-wide: every thread's allocations are counted.

/// Starts counting from zero.
void reroute_allocations_start(void);
/// Stops counting; returns the allocations counted since the start (realloc counts as one).
long reroute_allocations_stop(void);

/// Starts counting, from zero, the allocations made by the calling thread only.
void reroute_thread_allocations_start(void);
/// Stops the calling thread's count and returns it.
long reroute_thread_allocations_stop(void);

#endif
