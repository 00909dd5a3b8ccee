#include "server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "coexist/log.hpp"
#include "coexist/log_text.hpp"

namespace coexist::policyd {

namespace {

// epoll keys: listeners are 0..n-1, the signalfd has its own, connections count up from
// kFirstConnectionKey, never reused, so an event for a connection closed earlier in the same
// batch finds nothing instead of a stranger.
constexpr std::uint64_t kSignalKey = 1000;
constexpr std::uint64_t kFirstConnectionKey = 1 << 16;
constexpr int kEventsPerWait = 256;
// After accept() fails for want of file descriptors, listeners rest this long.
constexpr std::chrono::seconds kAcceptPause{1};

// The client as log lines name it, from the address accept() gave: taken then, it survives a
// client that resets the connection before its first read (getpeername() would fail by then).
std::string describe_peer(int fd, const sockaddr_storage& addr) {
    char host[INET6_ADDRSTRLEN] = "";
    if (addr.ss_family == AF_INET) {
        const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
        ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        return fmt::format("{}:{}", host, ntohs(in->sin_port));
    }
    if (addr.ss_family == AF_INET6) {
        const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
        ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        // fmt, not `"[" + std::string`: GCC 12 -O3 gives a false -Wrestrict for that form.
        return fmt::format("[{}]:{}", host, ntohs(in6->sin6_port));
    }
    // A unix socket's client has no address; the kernel keeps its credentials from connect().
    ucred cred{};
    socklen_t cred_len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len) == 0)
        return fmt::format("unix pid={}", cred.pid);
    return "unix";
}

sigset_t stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    return set;
}

}  // namespace

Server::Server(const PolicydConfig& limits, const SessionServices& services, std::vector<Listener> listeners)
    : limits_(limits), services_(services),
      session_limits_{limits.max_request_bytes, limits.max_attributes}, listeners_(std::move(listeners)),
      next_id_(kFirstConnectionKey), io_(limits.io_uring, kEventsPerWait),
      read_buffer_(std::make_unique_for_overwrite<char[]>(kReadsPerBatch * kReadChunkBytes)) {
    epoll_ = FileDescriptor(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) throw SystemError("epoll_create1", errno);

    const sigset_t set = stop_signals();
    if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) throw SystemError("sigprocmask", errno);
    signals_ = FileDescriptor(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!signals_) throw SystemError("signalfd", errno);
    watch(signals_.get(), kSignalKey, EPOLLIN);

    for (std::size_t i = 0; i < listeners_.size(); ++i) watch(listeners_[i].socket.get(), i, EPOLLIN);
    // At most one entry per event of a turn: no allocation while serving.
    answered_.reserve(kEventsPerWait);
    readable_.reserve(kEventsPerWait);
    in_batch_.reserve(kEventsPerWait);
}

std::string Server::socket_io() const {
    if (io_.uses_io_uring()) return "io_uring";
    return "system calls (no io_uring: " + io_.unavailable_reason() + ")";
}

Server::~Server() = default;

void Server::watch(int fd, std::uint64_t key, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) throw SystemError("epoll_ctl(ADD)", errno);
}

void Server::run() {
    std::array<epoll_event, kEventsPerWait> events{};
    Clock::time_point next_tick = Clock::now() + kTimerTick;
    for (;;) {
        // Rounded up: truncated, the last fraction of a millisecond before the tick became
        // epoll_wait(..., 0) again and again, a busy loop until the tick came.
        const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_tick - Clock::now());
        const int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()),
                                   static_cast<int>(std::max<std::int64_t>(0, wait.count())));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw SystemError("epoll_wait", errno);
        }
        const Clock::time_point now = Clock::now();
        for (int i = 0; i < n; ++i) {
            const std::uint64_t key = events[i].data.u64;
            if (key == kSignalKey) {
                if (!on_signal()) return;
            } else if (key < listeners_.size()) {
                accept_one_batch(listeners_[key], now);
            } else if (events[i].events & EPOLLOUT) {
                answered_.push_back(key);  // room again for the replies it waits to send
            } else if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                readable_.push_back(key);
            }
        }
        serve_readable(now);
        flush_answered(now);
        if (now >= next_tick) {
            close_idle(now);
            if (accept_paused_until_ && now >= *accept_paused_until_) resume_accepting(now);
            if (evicted_since_log_ > 0) {
                log_warning("max_connections ({}) reached: closed {} least recently active connection(s) "
                            "to admit new ones",
                            limits_.max_connections, evicted_since_log_);
                evicted_since_log_ = 0;
            }
            next_tick = now + kTimerTick;
        }
    }
}

bool Server::on_signal() {
    signalfd_siginfo info{};
    while (::read(signals_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        if (info.ssi_signo == SIGHUP) {
            // Map changes are seen by the next lookup without any reload; the configuration
            // (sockets, limits, domains) is read at start only, so a restart applies it.
            log_info("SIGHUP ignored: map changes need no reload; restart to apply configuration changes");
            continue;
        }
        log_info("stopping on signal {} ({} connections open)", ::strsignal(static_cast<int>(info.ssi_signo)),
                 connections_.size());
        return false;
    }
    return true;
}

void Server::accept_from(Listener& listener, Clock::time_point now) {
    for (int i = 0; i < kAcceptsPerTurn; ++i) {
        sockaddr_storage peer_address{};
        socklen_t peer_length = sizeof peer_address;
        FileDescriptor client(::accept4(listener.socket.get(), reinterpret_cast<sockaddr*>(&peer_address),
                                        &peer_length, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!client) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) return;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_warning("accept on {}: {}; not accepting for {}s", listener.spec, std::strerror(errno),
                            kAcceptPause.count());
                pause_accepting(now);
                return;
            }
            log_warning("accept on {}: {}", listener.spec, std::strerror(errno));
            return;
        }
        // At the limit, the least recently active connection makes room: a newcomer is most
        // likely a Postfix process with mail to route, while the oldest idle connection is
        // either a Postfix process that reconnects transparently on EOF (both the policy and the
        // socketmap client do) or a client that holds a slot without using it.
        if (connections_.size() >= limits_.max_connections && !connections_.empty()) {
            close_connection(connections_.begin(), "");
            ++evicted_since_log_;
        }
        // Replies go out at once: one small reply per request, and the client sends nothing more
        // until it has it, so Nagle's algorithm (and autocorking) could only hold it back.
        // A unix socket refuses the option; nothing to do there.
        const int one = 1;
        (void)::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        // Not fatal if refused: the kernel's default then bounds it.
        (void)::setsockopt(client.get(), SOL_SOCKET, SO_SNDBUF, &kSendBufferBytes, sizeof kSendBufferBytes);
        std::unique_ptr<Session> session;
        if (listener.protocol == Protocol::policy)
            session = std::make_unique<PolicySession>(services_, session_limits_);
        else
            session = std::make_unique<SocketmapSession>(services_, session_limits_);
        const std::uint64_t id = next_id_++;
        std::string peer = describe_peer(client.get(), peer_address);
        const int fd = client.get();
        connections_.emplace_back(std::move(client), std::move(session), id, std::move(peer), now);
        auto it = std::prev(connections_.end());
        by_id_.emplace(id, it);
        try {
            watch(fd, id, EPOLLIN | EPOLLRDHUP);
        } catch (const SystemError& e) {
            log_warning("{}", e.what());
            close_connection(it, "");
        }
    }
}

void Server::accept_one_batch(Listener& listener, Clock::time_point now) {
    try {
        accept_from(listener, now);
    } catch (const std::exception& e) {
        // Out of memory, most likely: the connections already served go on, the next turn of
        // the loop accepts again.
        log_error("accept on {}: internal error: {}", listener.spec, loggable(e.what()));
    } catch (...) {
        log_error("accept on {}: internal error", listener.spec);
    }
}

template <typename F>
void Server::guarded(std::uint64_t id, F&& f) noexcept {
    // Whatever goes wrong while serving one connection (an allocation that fails, a bug in a
    // session) ends that connection, never the daemon and the hundreds of others it serves.
    // Postfix reconnects; the request in flight gets the client's own temporary failure
    // (smtpd_policy_service_default_action, or a socketmap lookup error: 451/deferred).
    try {
        f();
    } catch (const std::exception& e) {
        close_after_internal_error(id, e.what());
    } catch (...) {
        close_after_internal_error(id, "unknown exception");
    }
}

void Server::close_after_internal_error(std::uint64_t id, std::string_view what) noexcept {
    try {
        const auto found = by_id_.find(id);  // the failure may have closed it already
        log_error("closing connection from {}: internal error: {}",
                  found == by_id_.end() ? std::string("a client") : found->second->peer(), loggable(what));
        if (found != by_id_.end()) close_connection(found->second, "");
    } catch (...) {
    }
}

void Server::serve_readable(Clock::time_point now) noexcept {
    for (std::size_t first = 0; first < readable_.size(); first += kReadsPerBatch) {
        const std::size_t end = std::min(readable_.size(), first + kReadsPerBatch);
        in_batch_.clear();
        for (std::size_t i = first; i < end; ++i) {
            const auto found = by_id_.find(readable_[i]);
            if (found == by_id_.end()) continue;  // closed earlier in this turn (evicted)
            io_.receive(found->second->fd(), read_slot(in_batch_.size()));
            in_batch_.push_back(readable_[i]);
        }
        const std::span<const long> results = io_.run();
        for (std::size_t j = 0; j < in_batch_.size(); ++j)
            guarded(in_batch_[j], [&] { serve_received(in_batch_[j], results[j], read_slot(j), now); });
    }
    readable_.clear();
}

void Server::serve_received(std::uint64_t id, long result, std::span<char> data, Clock::time_point now) {
    const auto found = by_id_.find(id);
    if (found == by_id_.end()) return;
    const auto it = found->second;
    const Connection::Next next = it->received(result, std::string_view(data.data(), data.size()), now);
    // Most recently active last: the idle sweep and the eviction both start at the front.
    if (it->last_activity() == now) connections_.splice(connections_.end(), connections_, it);
    // Answered: the replies go with the others at the end of this turn, and what the socket
    // waits for next is settled then.
    if (next == Connection::Next::read && it->has_output()) {
        answered_.push_back(id);
        return;
    }
    apply(it, next);
}

void Server::flush_answered(Clock::time_point now) noexcept {
    for (std::size_t first = 0; first < answered_.size(); first += io_.max_batch()) {
        const std::size_t end = std::min(answered_.size(), first + std::size_t{io_.max_batch()});
        in_batch_.clear();
        for (std::size_t i = first; i < end; ++i) {
            const auto found = by_id_.find(answered_[i]);
            if (found == by_id_.end()) continue;  // closed later in this turn
            io_.send(found->second->fd(), found->second->output());
            in_batch_.push_back(answered_[i]);
        }
        const std::span<const long> results = io_.run();
        for (std::size_t j = 0; j < in_batch_.size(); ++j)
            guarded(in_batch_[j], [&] {
                const auto found = by_id_.find(in_batch_[j]);
                if (found == by_id_.end()) return;
                const auto it = found->second;
                const Connection::Next next = it->sent(results[j], now);
                if (it->last_activity() == now) connections_.splice(connections_.end(), connections_, it);
                apply(it, next);
            });
    }
    answered_.clear();
}

void Server::apply(ConnectionList::iterator it, Connection::Next next) {
    epoll_event ev{};
    ev.data.u64 = it->id();
    switch (next) {
    case Connection::Next::close:
        close_connection(it, it->close_reason());
        return;
    case Connection::Next::read:
        ev.events = EPOLLIN | EPOLLRDHUP;
        break;
    case Connection::Next::write:
        // Backpressure: a client that doesn't read its replies gets no more requests read.
        ev.events = EPOLLOUT;
        break;
    }
    // Level-triggered, so an unchanged interest needs no syscall: a request answered in full
    // (nearly all of them) leaves the socket registered for reading, as it was.
    if (it->armed() == next) return;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, it->fd(), &ev) != 0) {
        log_warning("epoll_ctl(MOD): {}", std::strerror(errno));
        close_connection(it, "");
        return;
    }
    it->set_armed(next);
}

void Server::close_connection(ConnectionList::iterator it, std::string_view why) {
    if (!why.empty()) log_warning("closing connection from {}: {}", it->peer(), loggable(why));
    // Closing the descriptor removes it from the epoll set.
    by_id_.erase(it->id());
    connections_.erase(it);
}

void Server::close_idle(Clock::time_point now) {
    const auto limit = std::chrono::seconds(limits_.idle_timeout_seconds);
    while (!connections_.empty() && now - connections_.front().last_activity() >= limit) {
        auto it = connections_.begin();
        // An idle Postfix connection is routine (Postfix reconnects); a half-sent request is not,
        // nor a client that left its replies unread for idle_timeout (the socket took none).
        close_connection(it, it->has_output()    ? "replies unread at idle_timeout (the client stopped reading)"
                             : it->mid_request() ? "request incomplete at idle_timeout"
                                                 : "");
    }
}

void Server::pause_accepting(Clock::time_point now) {
    for (const auto& l : listeners_) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, l.socket.get(), nullptr);
    accept_paused_until_ = now + kAcceptPause;
}

void Server::resume_accepting(Clock::time_point) {
    for (std::size_t i = 0; i < listeners_.size(); ++i) watch(listeners_[i].socket.get(), i, EPOLLIN);
    accept_paused_until_.reset();
}

}  // namespace coexist::policyd
