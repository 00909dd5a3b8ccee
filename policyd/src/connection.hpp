// One accepted client connection: its socket, its protocol session, and the replies waiting to
// be written. Non-blocking throughout; the event loop (server.cpp) decides when to call it.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "coexist/system_error.hpp"
#include "sessions.hpp"

namespace coexist::policyd {

using Clock = std::chrono::steady_clock;

class Connection {
public:
    enum class Next {
        read,   // wait until the client sends more
        write,  // replies are pending: wait until the socket takes more, read nothing meanwhile
        close,  // done: EOF, I/O error, protocol error, or the final reply is sent
    };

    Connection(FileDescriptor socket, std::unique_ptr<Session> session, std::uint64_t id, std::string peer,
               Clock::time_point now);

    // One read of at most `scratch.size()` bytes, fed to the session, whose replies wait in
    // the connection until flush(). One read per wake-up keeps the loop fair: a client that
    // pipelines a flood of requests gets no more turns than one that sends a single request.
    // close on EOF or a read error; otherwise read, and has_output() says whether to flush().
    Next on_readable(std::span<char> scratch, Clock::time_point now);
    Next on_writable() { return flush(); }
    // Sends as much of the waiting replies as the socket takes: read when all went, write when
    // some wait for room, close after an error or a final reply.
    Next flush();
    // Replies wait, or the session ended with a final one to send.
    bool has_output() const { return !pending_replies_.empty() || close_after_flush_; }

    int fd() const { return socket_.get(); }
    std::uint64_t id() const { return id_; }
    const std::string& peer() const { return peer_; }
    // Last time a request was completed (or the connection was accepted): what idle_timeout
    // and the connection limit's eviction order look at.
    Clock::time_point last_activity() const { return last_activity_; }
    bool mid_request() const { return session_->mid_request(); }
    // Why the connection ends, for the log; empty for a plain EOF.
    const std::string& close_reason() const { return close_reason_; }
    // What the event loop last registered with epoll for this socket (read or write; read when
    // accepted), so that it calls epoll_ctl only when that changes: almost every request is
    // answered in full at once and leaves the socket waiting to read, as before it.
    Next armed() const { return armed_; }
    void set_armed(Next interest) { armed_ = interest; }

private:
    FileDescriptor socket_;
    std::unique_ptr<Session> session_;
    std::uint64_t id_;
    std::string peer_;
    Clock::time_point last_activity_;
    // Replies are appended here by the session and sent from here: one send() for all the
    // replies of one read, and no allocation once the buffer has grown to a reply's size.
    std::string pending_replies_;
    bool close_after_flush_ = false;
    Next armed_ = Next::read;
    std::string close_reason_;
};

}  // namespace coexist::policyd
