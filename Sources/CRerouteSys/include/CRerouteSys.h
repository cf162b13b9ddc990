#ifndef REROUTE_SYS_H
#define REROUTE_SYS_H

/// Atomically exchanges two paths (Linux renameat2 with RENAME_EXCHANGE): after the call each
/// name refers to what the other did; there is no moment where either is missing.
/// Returns 0, or -1 with errno set (EINVAL / ENOSYS where the file system cannot).
int reroute_exchange_paths(const char *a, const char *b);

#endif
