#include "connection.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace coexist::policyd {

Connection::Connection(FileDescriptor socket, std::unique_ptr<Session> session, std::uint64_t id,
                       std::string peer, Clock::time_point now)
    : socket_(std::move(socket)), session_(std::move(session)), id_(id), peer_(std::move(peer)),
      last_activity_(now) {}

Connection::Next Connection::on_readable(std::span<char> scratch, Clock::time_point now) {
    const ssize_t n = ::recv(socket_.get(), scratch.data(), scratch.size(), 0);
    if (n == 0) {
        if (session_->mid_request()) close_reason_ = "client closed the connection in the middle of a request";
        return Next::close;
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Next::read;
        close_reason_ = std::string("read error: ") + std::strerror(errno);
        return Next::close;
    }
    const std::size_t replies_before = pending_replies_.size();
    if (!session_->consume(std::string_view(scratch.data(), static_cast<std::size_t>(n)), pending_replies_)) {
        close_after_flush_ = true;
        close_reason_ = std::string(session_->error());
    }
    if (pending_replies_.size() > replies_before) last_activity_ = now;
    return Next::read;
}

Connection::Next Connection::flush() {
    while (!pending_replies_.empty()) {
        // MSG_NOSIGNAL: a client that went away is an EPIPE here, not a SIGPIPE for the daemon.
        const ssize_t n = ::send(socket_.get(), pending_replies_.data(), pending_replies_.size(),
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return Next::write;
            if (close_reason_.empty()) close_reason_ = std::string("write error: ") + std::strerror(errno);
            return Next::close;
        }
        if (static_cast<std::size_t>(n) == pending_replies_.size()) {
            pending_replies_.clear();  // the usual case: all of it went, the capacity stays
            break;
        }
        pending_replies_.erase(0, static_cast<std::size_t>(n));
    }
    return close_after_flush_ ? Next::close : Next::read;
}

}  // namespace coexist::policyd
