// The stack of the threads libmilter starts for SMTP sessions.
#pragma once

#include <cstddef>

namespace coexist::milter {

// The stack each libmilter session thread gets, in bytes. libmilter starts one thread per
// milter connection (mi_listener: one per SMTP session at an MX) with default attributes, so
// glibc gives each the process's RLIMIT_STACK, 8 MiB on Debian. glibc keeps only 40 MiB of
// stacks of exited threads for reuse (nptl's stack cache, glibc.pthread.stack_cache_size):
// five of those, where an MX holds dozens of sessions open. Every other session then maps a
// fresh stack (mmap, mprotect of its guard page, page faults) and unmaps it at its end: 10% of
// the milter's CPU at an MX, measured with perf under bench/relay.py (allocate_stack 5.8%,
// munmap 3.4%, madvise 0.9%). At 256 KiB, 160 stacks fit in the cache. A session's deepest
// path (route(), LMDB's cursor, fmt, syslog, an exception unwinding) uses a few tens of KiB;
// AddressSanitizer builds, whose frames are several times larger, get 1 MiB.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr std::size_t kSessionThreadStackBytes = 1024 * 1024;
#else
inline constexpr std::size_t kSessionThreadStackBytes = 256 * 1024;
#endif

// Makes `bytes` the stack size of every thread the process starts from now on with default
// attributes (pthread_setattr_default_np(3)); threads already running keep theirs. Call it
// before smfi_main(). Throws SystemError when glibc refuses (a size below PTHREAD_STACK_MIN).
void set_default_thread_stack(std::size_t bytes);

}  // namespace coexist::milter
