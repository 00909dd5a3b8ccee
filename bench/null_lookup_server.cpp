// The floor of the lookup designs (issue 13): a socketmap and policy server that does nothing but
// frame. Same protocols and byte-for-byte the same answers as coexist-policyd gives for the
// benchmark's users (bench-shared rule: userN@contoso.com is migrated iff N % 10 == 0), decided
// from the key alone: no map, no config, no logging. One thread, epoll, non-blocking sockets,
// like coexist-policyd, so the ratio between the two is the cost of coexist's own work.
// It stands alone on purpose (no coexist library): a floor that shares coexist's code would
// share its costs.
//
//   bench_null_lookup_server [--socketmap SPEC] [--policy SPEC]     SPEC: inet:HOST:PORT | unix:PATH
//
// Socketmap (socketmap_table(5)): "virtual userN@contoso.com" -> "OK userN@o365.contoso.com" for
// a migrated N, "NOTFOUND " otherwise; "recipients KEY" -> "OK rewrite" / "OK relay" (coexist's
// answers for a migrated and a source user); any other table -> PERM. Policy delegation
// (SMTPD_POLICY_README): every request -> "action=DUNNO", coexist's answer for a known user.
// Stops on SIGTERM/SIGINT (the default action); a broken request closes its connection.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "bench_users.hpp"

namespace {

constexpr std::size_t kReadSize = 64 * 1024;
// Bounds, as coexist-policyd has (max_request_bytes): a request larger than this closes the connection.
constexpr std::size_t kMaxRequestBytes = 64 * 1024;

class Fd {
public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    Fd& operator=(Fd&& o) noexcept {
        if (this != &o) {
            reset();
            fd_ = o.fd_;
            o.fd_ = -1;
        }
        return *this;
    }
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }
    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_;
};

[[noreturn]] void die(const std::string& what) {
    std::fprintf(stderr, "bench_null_lookup_server: %s: %s\n", what.c_str(), std::strerror(errno));
    std::exit(1);
}

// "inet:HOST:PORT" or "unix:PATH": a listening, non-blocking socket.
Fd listen_on(const std::string& spec) {
    if (spec.rfind("unix:", 0) == 0) {
        const std::string path = spec.substr(5);
        sockaddr_un addr{};
        if (path.size() >= sizeof addr.sun_path) {
            errno = ENAMETOOLONG;
            die(spec);
        }
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        ::unlink(path.c_str());
        Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!s) die("socket");
        if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind " + spec);
        ::chmod(path.c_str(), 0666);
        if (::listen(s.get(), 1024) != 0) die("listen " + spec);
        return s;
    }
    if (spec.rfind("inet:", 0) != 0) {
        errno = EINVAL;
        die("socket spec is not inet:HOST:PORT or unix:PATH: " + spec);
    }
    const std::string rest = spec.substr(5);
    const auto colon = rest.rfind(':');
    if (colon == std::string::npos) {
        errno = EINVAL;
        die("no port in " + spec);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(rest.c_str() + colon + 1)));
    if (::inet_pton(AF_INET, rest.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
        errno = EINVAL;
        die("not an IPv4 address in " + spec);
    }
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!s) die("socket");
    const int one = 1;
    ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("bind " + spec);
    if (::listen(s.get(), 1024) != 0) die("listen " + spec);
    return s;
}

using coexist::bench::migrated;

void append_netstring(std::string& out, std::string_view payload) {
    char len[24];
    const auto [end, ec] = std::to_chars(len, len + sizeof len, payload.size());
    (void)ec;
    out.append(len, end);
    out += ':';
    out.append(payload);
    out += ',';
}

void socketmap_answer(std::string_view request, std::string& out) {
    const auto space = request.find(' ');
    const std::string_view table = request.substr(0, space);
    const std::string_view key = space == std::string_view::npos ? std::string_view() : request.substr(space + 1);
    if (table == "virtual") {
        if (!migrated(key)) return append_netstring(out, "NOTFOUND ");
        // "OK " + local part + "@o365.contoso.com", built in place.
        const std::string_view local = key.substr(0, key.find('@'));
        char buf[512];
        if (local.size() + 3 + 17 > sizeof buf) return append_netstring(out, "NOTFOUND ");
        std::size_t n = 0;
        std::memcpy(buf, "OK ", 3);
        n += 3;
        std::memcpy(buf + n, local.data(), local.size());
        n += local.size();
        std::memcpy(buf + n, "@o365.contoso.com", 17);
        n += 17;
        return append_netstring(out, std::string_view(buf, n));
    }
    if (table == "recipients") return append_netstring(out, migrated(key) ? "OK rewrite" : "OK relay");
    append_netstring(out, "PERM unknown table");
}

enum class Protocol { socketmap, policy };

struct Connection {
    Fd fd;
    Protocol protocol;
    std::string in;   // bytes received, not yet a whole request
    std::string out;  // replies not yet sent
    bool writing = false;  // registered for EPOLLOUT (replies wait) rather than EPOLLIN
};

// Parses every whole request in c.in, appends the replies to c.out. False: the stream is broken.
bool serve_requests(Connection& c) {
    std::size_t pos = 0;
    const std::string_view in = c.in;
    if (c.protocol == Protocol::socketmap) {
        for (;;) {
            const auto colon = in.find(':', pos);
            if (colon == std::string_view::npos) {
                if (in.size() - pos > 20) return false;
                break;
            }
            std::size_t len = 0;
            const auto [end, ec] = std::from_chars(in.data() + pos, in.data() + colon, len);
            if (ec != std::errc() || end != in.data() + colon || colon == pos || len > kMaxRequestBytes) return false;
            if (in.size() < colon + 1 + len + 1) break;
            if (in[colon + 1 + len] != ',') return false;
            socketmap_answer(in.substr(colon + 1, len), c.out);
            pos = colon + 1 + len + 1;
        }
    } else {
        // A request ends at an empty line; the null server decides nothing, so it only looks
        // for "\n\n" (Postfix sends "\n" line ends).
        for (;;) {
            const auto end = in.find("\n\n", pos);
            if (end == std::string_view::npos) break;
            c.out.append("action=DUNNO\n\n");
            pos = end + 2;
        }
    }
    c.in.erase(0, pos);
    return c.in.size() <= kMaxRequestBytes + 32;
}

// Sends what it can of c.out. False: the connection is gone.
bool flush(Connection& c) {
    while (!c.out.empty()) {
        const ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        c.out.erase(0, static_cast<std::size_t>(n));
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    struct ListenerSpec {
        Fd fd;
        Protocol protocol;
    };
    std::vector<ListenerSpec> listeners;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if ((arg == "--socketmap" || arg == "--policy") && i + 1 < argc) {
            listeners.push_back({listen_on(argv[++i]), arg == "--socketmap" ? Protocol::socketmap : Protocol::policy});
        } else {
            std::fprintf(stderr, "usage: bench_null_lookup_server [--socketmap SPEC] [--policy SPEC]\n"
                                 "  SPEC: inet:HOST:PORT or unix:PATH\n");
            return 2;
        }
    }
    if (listeners.empty()) {
        std::fprintf(stderr, "bench_null_lookup_server: give --socketmap and/or --policy\n");
        return 2;
    }
    Fd ep(::epoll_create1(EPOLL_CLOEXEC));
    if (!ep) die("epoll_create1");
    // epoll keys: listeners are their index; connections their fd + listeners.size().
    for (std::size_t i = 0; i < listeners.size(); ++i) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = i;
        if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, listeners[i].fd.get(), &ev) != 0) die("epoll_ctl");
    }
    std::unordered_map<int, std::unique_ptr<Connection>> connections;
    std::vector<char> buf(kReadSize);
    epoll_event events[256];
    for (;;) {
        const int n = ::epoll_wait(ep.get(), events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int e = 0; e < n; ++e) {
            const std::uint64_t key = events[e].data.u64;
            if (key < listeners.size()) {
                for (int k = 0; k < 64; ++k) {  // bounded: other events get their turn
                    Fd c(::accept4(listeners[key].fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
                    if (!c) break;
                    // No Nagle: one small reply per request, the client waits for it.
                    const int one = 1;
                    ::setsockopt(c.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    epoll_event ev{};
                    ev.events = EPOLLIN | EPOLLRDHUP;
                    ev.data.u64 = static_cast<std::uint64_t>(c.get()) + listeners.size();
                    if (::epoll_ctl(ep.get(), EPOLL_CTL_ADD, c.get(), &ev) != 0) continue;
                    const int fd = c.get();
                    connections[fd] = std::make_unique<Connection>(Connection{std::move(c), listeners[key].protocol, {}, {}, false});
                }
                continue;
            }
            const int fd = static_cast<int>(key - listeners.size());
            const auto found = connections.find(fd);
            if (found == connections.end()) continue;
            Connection& c = *found->second;
            bool keep = true;
            if (events[e].events & EPOLLOUT) {
                keep = flush(c);
            } else {
                const ssize_t got = ::recv(fd, buf.data(), buf.size(), 0);
                if (got == 0) keep = false;
                else if (got < 0) keep = errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
                else {
                    c.in.append(buf.data(), static_cast<std::size_t>(got));
                    keep = serve_requests(c) && flush(c);
                }
            }
            if (keep && c.writing != !c.out.empty()) {
                // Backpressure as coexist-policyd: while replies wait, read no more requests.
                // Changed only when the state changes: a floor makes no syscall it can spare.
                c.writing = !c.out.empty();
                epoll_event ev{};
                ev.events = c.out.empty() ? (EPOLLIN | EPOLLRDHUP) : EPOLLOUT;
                ev.data.u64 = key;
                keep = ::epoll_ctl(ep.get(), EPOLL_CTL_MOD, fd, &ev) == 0;
            }
            if (!keep) connections.erase(found);  // closing the fd removes it from the epoll set
        }
    }
}
