// One accepted client connection: its socket, its protocol session, and the replies waiting to
// be written. It makes no system call: the event loop (server.cpp) reads and writes the socket,
// the reads and the writes of one turn together (batch_io.hpp), and tells it what came of them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
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

    // What one receive on the socket brought (server.cpp does the reads, a turn's together):
    // `result` is the byte count of `data`, 0 for end of file, or -errno. The bytes are fed to
    // the session, whose replies wait in the connection until sent. close on EOF or a read
    // error; otherwise read, and has_output() says whether there is something to send.
    Next received(long result, std::string_view data, Clock::time_point now);
    // The replies waiting to be sent, all of them: send what the socket takes, then sent().
    std::string_view output() const { return pending_replies_; }
    // What one send of output() did (`result`: bytes taken, or -errno): read when all of it
    // went, write when some waits for room (the socket was full), close after a send error or
    // once a final reply is out. Bytes taken count as activity: a client that reads its replies
    // slowly is not idle, though no request of its completes while it holds the daemon back.
    Next sent(long result, Clock::time_point now);
    // Replies wait, or the session ended with a final one to send.
    bool has_output() const { return !pending_replies_.empty() || close_after_flush_; }

    int fd() const { return socket_.get(); }
    std::uint64_t id() const { return id_; }
    const std::string& peer() const { return peer_; }
    // Last time a request was completed, the socket took replies, or the connection was
    // accepted: what idle_timeout and the connection limit's eviction order look at.
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
    // Replies are appended here by the session and sent from here: one send for all the
    // replies of one read, and no allocation once the buffer has grown to a reply's size.
    std::string pending_replies_;
    bool close_after_flush_ = false;
    Next armed_ = Next::read;
    std::string close_reason_;
};

}  // namespace coexist::policyd
