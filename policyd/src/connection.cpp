#include "connection.hpp"

#include <cerrno>
#include <cstring>

namespace coexist::policyd {

Connection::Connection(FileDescriptor socket, std::unique_ptr<Session> session, std::uint64_t id,
                       std::string peer, Clock::time_point now)
    : socket_(std::move(socket)), session_(std::move(session)), id_(id), peer_(std::move(peer)),
      last_activity_(now) {}

Connection::Next Connection::received(long result, std::string_view data, Clock::time_point now) {
    if (result == 0) {
        if (session_->mid_request()) close_reason_ = "client closed the connection in the middle of a request";
        return Next::close;
    }
    if (result < 0) {
        if (result == -EAGAIN || result == -EWOULDBLOCK || result == -EINTR) return Next::read;
        close_reason_ = std::string("read error: ") + std::strerror(static_cast<int>(-result));
        return Next::close;
    }
    const std::size_t replies_before = pending_replies_.size();
    if (!session_->consume(data.substr(0, static_cast<std::size_t>(result)), pending_replies_)) {
        close_after_flush_ = true;
        close_reason_ = std::string(session_->error());
    }
    if (pending_replies_.size() > replies_before) last_activity_ = now;
    return Next::read;
}

Connection::Next Connection::sent(long result, Clock::time_point now) {
    if (result > 0) last_activity_ = now;
    if (result < 0) {
        if (result == -EAGAIN || result == -EWOULDBLOCK || result == -EINTR) return Next::write;
        if (close_reason_.empty()) close_reason_ = std::string("write error: ") + std::strerror(static_cast<int>(-result));
        return Next::close;
    }
    if (static_cast<std::size_t>(result) < pending_replies_.size()) {
        // The socket is full: the rest goes when epoll says it has room again.
        pending_replies_.erase(0, static_cast<std::size_t>(result));
        return Next::write;
    }
    pending_replies_.clear();  // the usual case: all of it went, the capacity stays
    return close_after_flush_ ? Next::close : Next::read;
}

}  // namespace coexist::policyd
