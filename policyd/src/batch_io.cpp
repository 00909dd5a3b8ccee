#include "batch_io.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "coexist/log.hpp"

namespace coexist::policyd {

namespace {

// The kernel's answer as a sentence; liburing returns -errno.
std::string kernel_error(const char* call, int negative_errno) {
    return std::string(call) + ": " + std::strerror(-negative_errno);
}

}  // namespace

BatchIo::BatchIo(bool use_io_uring, unsigned max_batch) : max_batch_(max_batch) {
    queued_.reserve(max_batch);
    results_.reserve(max_batch);
    if (!use_io_uring) {
        unavailable_reason_ = "io_uring = no in the configuration";
        return;
    }
    // Submission queue of max_batch entries: run() never has more in flight. No flags, so that
    // Debian 12's kernel (6.1) and anything since 5.6 take it.
    const int rc = io_uring_queue_init(max_batch, &ring_, 0);
    if (rc < 0) {  // ENOSYS (no io_uring), EPERM (sandbox, kernel.io_uring_disabled), ENOMEM
        unavailable_reason_ = kernel_error("io_uring_setup", rc);
        return;
    }
    io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
    const bool has_operations = probe && io_uring_opcode_supported(probe, IORING_OP_RECV) &&
                                io_uring_opcode_supported(probe, IORING_OP_SEND);
    if (probe) io_uring_free_probe(probe);
    if (!has_operations) {
        unavailable_reason_ = "the kernel's io_uring has no recv or send";
        io_uring_queue_exit(&ring_);
        return;
    }
    ring_ready_ = true;
}

BatchIo::~BatchIo() {
    if (ring_ready_) io_uring_queue_exit(&ring_);
}

void BatchIo::receive(int fd, std::span<char> buffer) {
    if (queued_.size() >= max_batch_) throw std::logic_error("BatchIo: more operations than max_batch");
    queued_.push_back({Kind::receive, fd, buffer.data(), buffer.size()});
}

void BatchIo::send(int fd, std::string_view data) {
    if (queued_.size() >= max_batch_) throw std::logic_error("BatchIo: more operations than max_batch");
    // send() does not write through the pointer; the cast only lets one Operation hold both.
    queued_.push_back({Kind::send, fd, const_cast<char*>(data.data()), data.size()});
}

std::span<const long> BatchIo::run() noexcept {
    // An operation whose fate is unknown (a ring that failed while it was in flight) reads as
    // an I/O error: the caller closes that connection, and Postfix asks again on a new one.
    results_.assign(queued_.size(), -EIO);
    // A batch of one gains nothing from the ring, and io_uring_enter() costs a little more than
    // the recv() or send() it would stand for (an idle relay's lookups come one at a time).
    if (ring_ready_ && queued_.size() > 1) run_on_ring();
    else run_by_system_calls(0);
    queued_.clear();
    return results_;
}

void BatchIo::run_by_system_calls(std::size_t from) noexcept {
    for (std::size_t i = from; i < queued_.size(); ++i) {
        const Operation& op = queued_[i];
        for (;;) {
            const ssize_t n = op.kind == Kind::receive
                                  ? ::recv(op.fd, op.data, op.size, MSG_DONTWAIT)
                                  : ::send(op.fd, op.data, op.size, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            results_[i] = n < 0 ? -errno : n;
            break;
        }
    }
}

void BatchIo::run_on_ring() noexcept {
    const auto count = static_cast<unsigned>(queued_.size());
    if (count == 0) return;
    for (unsigned i = 0; i < count; ++i) {
        const Operation& op = queued_[i];
        // Never null: the queue has max_batch entries and each run() empties it.
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (op.kind == Kind::receive) io_uring_prep_recv(sqe, op.fd, op.data, op.size, MSG_DONTWAIT);
        else io_uring_prep_send(sqe, op.fd, op.data, op.size, MSG_NOSIGNAL | MSG_DONTWAIT);
        io_uring_sqe_set_data64(sqe, i);
    }
    // One io_uring_enter(2) submits them all and waits for their completions. Each completes
    // within it: MSG_DONTWAIT makes a socket that is not ready answer EAGAIN at once instead
    // of leaving the operation waiting. The kernel consumes the queue in order and skips the
    // wait when it consumed less than all (io_uring_enter: "submitted != to_submit").
    unsigned submitted = 0;
    std::string failure;
    while (submitted < count) {
        const int rc = io_uring_submit_and_wait(&ring_, count - submitted);
        if (rc == -EINTR) continue;
        if (rc <= 0) {
            failure = rc < 0 ? kernel_error("io_uring_enter", rc) : "io_uring_enter consumed nothing";
            break;
        }
        submitted += static_cast<unsigned>(rc);
    }
    for (unsigned reaped = 0; reaped < submitted;) {
        io_uring_cqe* cqe = nullptr;
        const int rc = io_uring_wait_cqe(&ring_, &cqe);  // no system call when one is there
        if (rc == -EINTR) continue;
        if (rc < 0) {  // the unreaped ones stay -EIO
            failure = kernel_error("io_uring_wait_cqe", rc);
            break;
        }
        const std::uint64_t index = io_uring_cqe_get_data64(cqe);
        if (index < count) results_[index] = cqe->res;
        io_uring_cqe_seen(&ring_, cqe);
        ++reaped;
    }
    if (failure.empty()) return;
    give_up_ring(std::move(failure));
    // What the kernel never took (the queue's tail: it is consumed in order) is done now.
    run_by_system_calls(submitted);
}

void BatchIo::give_up_ring(std::string why) noexcept {
    try {
        log_warning("io_uring failed ({}): reading and writing sockets by system calls from now on", why);
        unavailable_reason_ = std::move(why);
    } catch (...) {
    }
    io_uring_queue_exit(&ring_);
    ring_ready_ = false;
}

}  // namespace coexist::policyd
