// The stack of the threads libmilter starts to run the callbacks.
#pragma once

#include <cstddef>

namespace coexist::milter {

// The stack each libmilter worker thread gets, in bytes. Debian's libmilter runs the callbacks
// on a pool of workers that it starts when a session has a command and no worker is idle, and
// ends when they have been idle a while: at an MX, about two threads a message (perf stat,
// bench/relay.py mx 5 recipients: 1,961 clone3 for 1,000 messages). They get default
// attributes, so glibc gives each the process's RLIMIT_STACK, 8 MiB on Debian, and keeps only
// 40 MiB of exited threads' stacks for reuse (nptl's stack cache, glibc.pthread.stack_cache_size):
// five of them, fewer than an MX's busy workers. Most new workers then mapped a fresh stack
// (mmap, mprotect of its guard page, page faults) and unmapped one at their end: perf of
// coexist-milter under that load put allocate_stack at 9.4% of its CPU and munmap at 3.4%; at
// 256 KiB (160 stacks in the cache) 0.4% and 0.05% (26 mmap and 6 munmap for those 1,961
// threads). A callback's deepest path (route(), LMDB's cursor, fmt, syslog, an exception
// unwinding) uses about 11 KiB of stack, measured with odd recipients, 10,000 recipients and
// 5,000 trace headers; AddressSanitizer builds, whose frames are several times larger, get 1 MiB.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr std::size_t kWorkerThreadStackBytes = 1024 * 1024;
#else
inline constexpr std::size_t kWorkerThreadStackBytes = 256 * 1024;
#endif

// Makes `bytes` the stack size of every thread the process starts from now on with default
// attributes (pthread_setattr_default_np(3)); threads already running keep theirs. Call it
// before smfi_main(). Throws SystemError when glibc refuses (a size below PTHREAD_STACK_MIN).
void set_default_thread_stack(std::size_t bytes);

}  // namespace coexist::milter
