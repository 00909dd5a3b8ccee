// The socket reads and writes of one turn of the event loop, done together: with io_uring, all
// of them in one system call (io_uring_enter(2)); without it, one recv(2) or send(2) each.
//
// Why: every operation here is on a non-blocking socket that epoll has just reported ready, so
// each one is a short copy, and the system call around it is what costs. On the 2-core VM the
// bench runs on (page-table isolation without PCID) a system call costs about 1 us and empties
// the TLB, so a lookup that followed its own recv() paid for both; in bench/lookups.py at 64
// connections coexist-policyd's system time per request fell by about a third with the reads and
// the writes of a turn batched (see bench/RESULTS.md).
//
// io_uring is used when [policyd] io_uring = yes (the default) and the kernel lets us set up a
// ring with the two operations (Linux 5.6+; refused under some sandboxes and with the sysctl
// kernel.io_uring_disabled). Otherwise, or after a ring fails at run time, the same operations go
// through plain system calls, with the same results: callers never see the difference.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace coexist::policyd {

class BatchIo {
public:
    // Room for `max_batch` operations between two run() calls. With `use_io_uring`, sets up a
    // ring if the kernel allows it; never throws for a kernel that does not (unavailable_reason()
    // says why). Throws std::bad_alloc.
    BatchIo(bool use_io_uring, unsigned max_batch);
    ~BatchIo();
    BatchIo(const BatchIo&) = delete;
    BatchIo& operator=(const BatchIo&) = delete;

    bool uses_io_uring() const { return ring_ready_; }
    // Why io_uring is not used: "disabled in the configuration", the kernel's error, ...
    const std::string& unavailable_reason() const { return unavailable_reason_; }
    unsigned max_batch() const { return max_batch_; }

    // Queue one receive into `buffer`, or one send of `data`, on the non-blocking socket `fd`.
    // Both are MSG_DONTWAIT (a socket that is not ready after all answers EAGAIN, never waits);
    // sends are MSG_NOSIGNAL (a client that went away is EPIPE, not SIGPIPE). The buffers must
    // stay valid until run() returns. More than max_batch() queued operations is a bug:
    // std::logic_error.
    void receive(int fd, std::span<char> buffer);
    void send(int fd, std::string_view data);

    // Performs the queued operations and empties the queue (a single one by a system call, the
    // ring gaining nothing there). Returns each one's result, in the order they were queued: bytes received or sent (0 for a receive: end of file), or -errno.
    // The span is valid until the next receive(), send() or run(). Never throws: when a ring
    // fails, what it did not do is done by system calls and the ring is given up (logged once).
    std::span<const long> run() noexcept;

private:
    enum class Kind : unsigned char { receive, send };
    struct Operation {
        Kind kind;
        int fd;
        char* data;  // const for a send; recv() and send() take the same pointer
        std::size_t size;
    };

    void run_by_system_calls(std::size_t from) noexcept;
    void run_on_ring() noexcept;
    void give_up_ring(std::string why) noexcept;

    unsigned max_batch_;
    std::vector<Operation> queued_;
    std::vector<long> results_;
    io_uring ring_{};
    bool ring_ready_ = false;
    std::string unavailable_reason_;
};

}  // namespace coexist::policyd
