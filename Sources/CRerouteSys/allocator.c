#include <malloc.h>
#include "CRerouteSys.h"

int reroute_keep_freed_buffers(void) {
#if defined(__GLIBC__)
    // 32 MiB is glibc's largest mmap threshold on 64-bit; blocks above it (weights) stay
    // mappings of their own. A fixed threshold also stops glibc from moving it.
    int ok = mallopt(M_MMAP_THRESHOLD, 32 << 20);
    ok &= mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return ok ? 0 : -1;
#else
    return -1;
#endif
}
