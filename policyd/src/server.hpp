// The event loop: both listeners, every client connection, the idle timer and the signals, in
// one thread around one epoll instance.
//
// Why an event loop and not a thread pool: each Postfix process that uses us (every smtpd for
// the policy service; smtpd, cleanup, trivial-rewrite and proxymap for the socketmap) holds one
// long-lived connection that is idle most of the time. A pool of N threads blocked in read()
// would serve at most N of them, and one slow or hostile client would pin a thread. Here an idle
// or stalled connection costs a few hundred bytes and no thread. The work per request is a
// route() call, one short LMDB read transaction of a few microseconds that never waits on a
// lock (LMDB readers don't block), so doing it on the loop thread stalls nobody; the loop serves
// each ready connection one bounded read per turn, so a client flooding requests cannot starve
// the others either.
//
// A turn of the loop: one epoll_wait(), then the reads of every ready connection together, the
// requests they completed, and the replies of the turn sent together (batch_io.hpp: one
// io_uring_enter() for each batch where the kernel allows it). Lookups run back to back, not
// each after a system call of its own.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "coexist/config.hpp"
#include "coexist/system_error.hpp"
#include "batch_io.hpp"
#include "connection.hpp"
#include "sessions.hpp"

namespace coexist::policyd {

// The most one read() takes from one client per turn of the loop. Together with "read nothing
// while replies are pending" it also bounds the replies buffered per connection, and it bounds
// the work one client's pipelined backlog adds to a turn, which everyone else waits for: with
// 300 clients flooding a 1M-user map, a newcomer waited 1.2-1.9 s at 16 KiB, 0.25-0.35 s at
// 4 KiB (NEWS; bench/flood.py). Postfix sends one request at a time, well under 4 KiB; a
// longer one is simply read over several turns.
inline constexpr std::size_t kReadChunkBytes = 4 * 1024;
// Reads done together (one io_uring_enter), each into its own kReadChunkBytes of the read
// buffer: 256 KiB of address space, of which a turn touches what the clients sent.
inline constexpr std::size_t kReadsPerBatch = 64;
// The kernel's send buffer of each client socket (SO_SNDBUF; Linux doubles it). A reply is tens
// of bytes, so this only matters to a client that pipelines requests and reads late: it bounds
// what the kernel holds for it (autotuned TCP buffers grow to megabytes, times max_connections)
// and lets the daemon see a slow reader's progress often enough for idle_timeout.
inline constexpr int kSendBufferBytes = 64 * 1024;
// Most connections accepted from one listener per turn, so a connect flood cannot starve the
// established clients.
inline constexpr int kAcceptsPerTurn = 64;
// How often idle connections are looked for; idle_timeout is honoured to within this.
inline constexpr std::chrono::milliseconds kTimerTick{250};

enum class Protocol { policy, socketmap };

struct Listener {
    Protocol protocol;
    FileDescriptor socket;
    std::string spec;  // for log lines
};

class Server {
public:
    // Blocks SIGTERM, SIGINT and SIGHUP for the calling thread and takes them via a signalfd.
    Server(const PolicydConfig& limits, const SessionServices& services, std::vector<Listener> listeners);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // "io_uring", or "system calls" and why io_uring is not used: for the start-up log.
    std::string socket_io() const;

    // Serves until SIGTERM or SIGINT. Throws SystemError if epoll itself fails; an exception
    // while serving one client closes that client's connection (logged) and nothing else.
    void run();

private:
    using ConnectionList = std::list<Connection>;  // least recently active first

    void accept_one_batch(Listener& listener, Clock::time_point now);  // never throws
    void accept_from(Listener& listener, Clock::time_point now);
    // Reads from every connection in readable_, kReadsPerBatch at a time, and feeds what came to
    // its session; a connection with replies to send joins answered_.
    void serve_readable(Clock::time_point now) noexcept;
    void serve_received(std::uint64_t id, long result, std::span<char> data, Clock::time_point now);
    // Sends the replies of every connection answered in this turn of the loop (answered_).
    void flush_answered(Clock::time_point now) noexcept;
    // Runs f() for connection `id`: whatever f throws closes that connection and nothing else.
    template <typename F>
    void guarded(std::uint64_t id, F&& f) noexcept;
    std::span<char> read_slot(std::size_t index) {
        return {read_buffer_.get() + index * kReadChunkBytes, kReadChunkBytes};
    }
    void close_after_internal_error(std::uint64_t id, std::string_view what) noexcept;
    void apply(ConnectionList::iterator it, Connection::Next next);
    void close_connection(ConnectionList::iterator it, std::string_view why);
    void close_idle(Clock::time_point now);
    bool on_signal();  // false: stop serving
    void watch(int fd, std::uint64_t key, std::uint32_t events);
    void pause_accepting(Clock::time_point now);
    void resume_accepting(Clock::time_point now);

    const PolicydConfig& limits_;
    const SessionServices& services_;
    SessionLimits session_limits_;
    std::vector<Listener> listeners_;
    FileDescriptor epoll_;
    FileDescriptor signals_;
    ConnectionList connections_;
    std::unordered_map<std::uint64_t, ConnectionList::iterator> by_id_;
    std::uint64_t next_id_;
    BatchIo io_;
    std::unique_ptr<char[]> read_buffer_;  // kReadsPerBatch slots of kReadChunkBytes
    std::vector<std::uint64_t> readable_;  // connections to read from in this turn
    std::vector<std::uint64_t> in_batch_;  // the connections of the reads or sends in io_
    // Connections with replies computed in this turn of the loop, sent together at its end
    // (flush_answered), as Redis writes its replies before it sleeps: a client waiting for
    // several replies wakes once for all that are ready, not once for each. A reply sent the
    // moment it was computed woke the client (an IPI to its core) for each one when it waited
    // faster than the lookups came: 7,000-24,000 wake-ups per 100,000 requests in the bench,
    // about 100 with the bench's null server.
    std::vector<std::uint64_t> answered_;
    // Set when accept() ran out of file descriptors: listeners are unwatched until then, so a
    // readable listener we cannot serve doesn't spin the loop.
    std::optional<Clock::time_point> accept_paused_until_;
    unsigned evicted_since_log_ = 0;
};

}  // namespace coexist::policyd
