// Forwarding allocator with a counter (see the header). glibc exports its allocator under
// __libc_* names, so forwarding needs no dlsym (which itself allocates). Only on dynamic
// glibc without a sanitizer: sanitizers bring their own allocator (whose free would then
// receive glibc's pointers), and other C libraries have no __libc_* entry points. Elsewhere
// the counters stay at 0 and `AllocationCounter.isActive` is false.
#include "CRerouteAllocationCounter.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>  // defines __GLIBC__ on glibc

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define REROUTE_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define REROUTE_SANITIZED 1
#endif

static atomic_int counting;
static atomic_long allocations;
// Per-thread counting, so tests running in parallel in one process do not see each other's.
// initial-exec: no __tls_get_addr (which may call malloc) on access.
static _Thread_local int counting_this_thread __attribute__((tls_model("initial-exec")));
static _Thread_local long this_thread_allocations __attribute__((tls_model("initial-exec")));

#if defined(__GLIBC__) && !defined(REROUTE_SANITIZED)

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);
extern void __libc_free(void *pointer);

static inline void count_one(void) {
    if (atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    if (counting_this_thread) this_thread_allocations += 1;
}

void *malloc(size_t size) { count_one(); return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { count_one(); return __libc_calloc(count, size); }
void *realloc(void *pointer, size_t size) { count_one(); return __libc_realloc(pointer, size); }
void *memalign(size_t alignment, size_t size) { count_one(); return __libc_memalign(alignment, size); }
void *valloc(size_t size) { count_one(); return __libc_valloc(size); }
void *pvalloc(size_t size) { count_one(); return __libc_pvalloc(size); }
// Replaced with the others, so every pointer is freed by the allocator that made it.
void free(void *pointer) { __libc_free(pointer); }

void *aligned_alloc(size_t alignment, size_t size) {
    count_one();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    // POSIX: a power of two and a multiple of sizeof(void *), else EINVAL (nothing allocated).
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    count_one();
    void *p = __libc_memalign(alignment, size);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}
#endif

void reroute_allocations_start(void) {
    atomic_store(&allocations, 0);
    atomic_store(&counting, 1);
}

long reroute_allocations_stop(void) {
    atomic_store(&counting, 0);
    return atomic_load(&allocations);
}

void reroute_thread_allocations_start(void) {
    this_thread_allocations = 0;
    counting_this_thread = 1;
}

long reroute_thread_allocations_stop(void) {
    counting_this_thread = 0;
    return this_thread_allocations;
}
