#ifndef REROUTE_SYS_H
#define REROUTE_SYS_H

/// Atomically exchanges two paths (Linux renameat2 with RENAME_EXCHANGE): after the call each
/// name refers to what the other did; there is no moment where either is missing.
/// Returns 0, or -1 with errno set (EINVAL / ENOSYS where the file system cannot).
int reroute_exchange_paths(const char *a, const char *b);

/// Makes glibc's allocator keep freed blocks of up to 32 MiB in the process (no unmapping, no
/// trimming of the heap top below 1 GiB), so a run that frees and allocates the same large
/// buffers again (a decoder state per case) reuses pages already mapped instead of faulting
/// in and zeroing fresh ones. Process-wide: for an executable's entry point only. Returns 0,
/// or -1 where the C library is not glibc or refused.
int reroute_keep_freed_buffers(void);

#endif
