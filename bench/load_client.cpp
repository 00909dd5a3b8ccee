// Load client for the lookup servers (issue 13): C connections, each with one request in flight
// as Postfix's socketmap and policy clients do (a request, then wait for its answer), N requests
// in all, spread over the benchmark's users (userN@contoso.com, N < U). With --check every answer
// is compared, byte for byte, with what coexist-policyd answers for that user under the shared rule
// (migrated iff N % 10 == 0); one wrong answer fails the run: a fast wrong answer is not a result.
//
//   bench_load_client --socketmap|--policy SPEC --connections C --requests N --users U
//                     [--check] [--threads T] [--timeout SECONDS]       SPEC: inet:HOST:PORT | unix:PATH
//
// Prints one JSON line on stdout: requests, seconds, requests_per_second, p50_us, p99_us (the
// latency of each request, from just before its send to the return of the epoll_wait() that
// reported its answer whole, in microseconds), cpu_seconds and cpu_share (the
// client's own CPU time and its share of the wall time, to show it is not the bottleneck).
// Exit 0: every request answered (and right, with --check); 1: a wrong answer, a broken
// connection or no progress for --timeout seconds (default 30); 2: usage.
// One epoll loop per thread (default 1 thread: the server has the other core).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

enum class Protocol { socketmap, policy };

struct Options {
    Protocol protocol = Protocol::socketmap;
    std::string spec;
    int connections = 1;
    std::uint64_t requests = 10000;
    std::uint64_t users = 1000;
    bool check = false;
    int threads = 1;
    int timeout_seconds = 30;
};

std::atomic<bool> g_failed{false};

__attribute__((format(printf, 1, 2))) void fail(const char* fmt, ...) {
    if (g_failed.exchange(true)) return;  // the first failure is the one worth reading
    std::fprintf(stderr, "bench_load_client: ");
    va_list args;
    va_start(args, fmt);
    std::vfprintf(stderr, fmt, args);
    va_end(args);
    std::fprintf(stderr, "\n");
}

std::uint64_t now_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

int connect_to(const std::string& spec) {
    int fd = -1;
    if (spec.rfind("unix:", 0) == 0) {
        sockaddr_un addr{};
        const std::string path = spec.substr(5);
        if (path.size() >= sizeof addr.sun_path) return -1;
        addr.sun_family = AF_UNIX;
        std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
        fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            if (fd >= 0) ::close(fd);
            return -1;
        }
    } else if (spec.rfind("inet:", 0) == 0) {
        const std::string rest = spec.substr(5);
        const auto colon = rest.rfind(':');
        if (colon == std::string::npos) return -1;
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(rest.c_str() + colon + 1)));
        if (::inet_pton(AF_INET, rest.substr(0, colon).c_str(), &addr.sin_addr) != 1) return -1;
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
            if (fd >= 0) ::close(fd);
            return -1;
        }
        // Postfix's clients write a whole request at once; no Nagle delay between requests.
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    } else {
        return -1;
    }
    return fd;
}

// The user of the i-th request: a stride through all U users, so a large map is read all over
// (not the same few pages) and every user is asked once before any is asked twice when
// gcd(stride, U) == 1.
std::uint64_t user_of(std::uint64_t i, std::uint64_t users) { return (i * 7919u + i / users) % users; }

std::string address(std::uint64_t n) { return "user" + std::to_string(n) + "@contoso.com"; }

std::string netstring(std::string_view payload) {
    std::string out = std::to_string(payload.size());
    out += ':';
    out.append(payload);
    out += ',';
    return out;
}

// A RCPT request as Postfix 3.7's smtpd sends it (SMTPD_POLICY_README: every attribute, most
// of them empty for a plain client), so the server parses what it parses in production.
std::string policy_request(std::uint64_t n) {
    std::string r =
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
        "client_address=127.0.0.1\nclient_name=localhost\nclient_port=40000\n"
        "reverse_client_name=localhost\nserver_address=127.0.0.1\nserver_port=25\n"
        "helo_name=client.example.org\nsender=bench@example.org\nrecipient=";
    r += address(n);
    r += "\nrecipient_count=0\nqueue_id=\ninstance=1a2b.5f3c1e2d.4d5e6.0\nsize=0\netrn_domain=\nstress=\n"
         "sasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\nccert_fingerprint=\n"
         "ccert_pubkey_fingerprint=\nencryption_protocol=\nencryption_cipher=\nencryption_keysize=0\n"
         "policy_context=\ncompatibility_level=3.6\nmail_version=3.7.11\n\n";
    return r;
}

std::string request_for(Protocol p, std::uint64_t n) {
    if (p == Protocol::policy) return policy_request(n);
    return netstring("virtual " + address(n));
}

// coexist-policyd's answer for user n (the whole reply, framing included).
std::string expected_for(Protocol p, std::uint64_t n) {
    // A known user is never refused nor deferred: DUNNO leaves the verdict to the restrictions
    // that follow (policyd/src/replies.cpp, policy_action()).
    if (p == Protocol::policy) return "action=DUNNO\n\n";
    if (n % 10 == 0) return netstring("OK user" + std::to_string(n) + "@o365.contoso.com");
    return netstring("NOTFOUND ");
}

// Length of the whole reply at the start of `in`, or 0 when it is not all there yet; npos when broken.
std::size_t complete_reply(Protocol p, std::string_view in) {
    if (p == Protocol::policy) {
        const auto end = in.find("\n\n");
        return end == std::string_view::npos ? 0 : end + 2;
    }
    const auto colon = in.find(':');
    if (colon == std::string_view::npos) return in.size() > 20 ? std::string_view::npos : 0;
    std::size_t len = 0;
    const auto [end, ec] = std::from_chars(in.data(), in.data() + colon, len);
    if (ec != std::errc() || end != in.data() + colon) return std::string_view::npos;
    if (in.size() < colon + len + 2) return 0;
    return in[colon + 1 + len] == ',' ? colon + len + 2 : std::string_view::npos;
}

struct Conn {
    int fd = -1;
    std::uint64_t user = 0;
    std::uint64_t sent_at = 0;
    std::string in;
};

struct ThreadResult {
    std::vector<std::uint32_t> latencies_ns;  // capped at ~4.3 s, far beyond any answer we accept
};

// One thread: `conns` connections, requests next_request.fetch_add() < total.
void run_thread(const Options& o, int conns, std::atomic<std::uint64_t>& next_request, ThreadResult& result) {
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        fail("epoll_create1: %s", std::strerror(errno));
        return;
    }
    std::vector<Conn> cs(static_cast<std::size_t>(conns));
    std::string request;
    int active = 0;
    auto start_next = [&](std::size_t k) -> bool {
        const std::uint64_t i = next_request.fetch_add(1, std::memory_order_relaxed);
        if (i >= o.requests) return false;
        Conn& c = cs[k];
        c.user = user_of(i, o.users);
        request = request_for(o.protocol, c.user);
        c.sent_at = now_ns();
        // A request is at most a few hundred bytes: the socket buffer takes it whole.
        const ssize_t n = ::send(c.fd, request.data(), request.size(), MSG_NOSIGNAL);
        if (n != static_cast<ssize_t>(request.size())) {
            fail("send to %s: %s", o.spec.c_str(), std::strerror(errno));
            return false;
        }
        return true;
    };
    for (std::size_t k = 0; k < cs.size(); ++k) {
        cs[k].fd = connect_to(o.spec);
        if (cs[k].fd < 0) {
            fail("connect to %s: %s", o.spec.c_str(), std::strerror(errno));
            break;
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = k;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, cs[k].fd, &ev);
    }
    if (!g_failed) {
        for (std::size_t k = 0; k < cs.size(); ++k)
            if (start_next(k)) ++active;
    }
    std::vector<char> buf(16 * 1024);
    epoll_event events[256];
    while (active > 0 && !g_failed) {
        const int n = ::epoll_wait(ep, events, 256, o.timeout_seconds * 1000);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait: %s", std::strerror(errno));
            break;
        }
        if (n == 0) {
            fail("no answer for %d s from %s", o.timeout_seconds, o.spec.c_str());
            break;
        }
        // The answers epoll reports together were all there when it returned: each one's latency
        // ends here, not when this loop reaches it. Timed per connection, the last of 64 replies
        // also counted the client's handling of the 63 before it (a recv, a check, the next
        // send: some 4 us each, 250 us in all), a queue of the load client's own: Postfix's
        // clients are separate smtpd processes, each waiting on its own connection. It fell on
        // servers that answer a turn's requests together (coexist-policyd) and hardly on one
        // that answers each as it reads it (the null server).
        const std::uint64_t seen_at = now_ns();
        for (int e = 0; e < n; ++e) {
            const std::size_t k = events[e].data.u64;
            Conn& c = cs[k];
            const ssize_t got = ::recv(c.fd, buf.data(), buf.size(), 0);
            if (got <= 0) {
                if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                fail("connection to %s closed before the answer for %s %s", o.spec.c_str(), address(c.user).c_str(),
                     got < 0 ? std::strerror(errno) : "");
                break;
            }
            c.in.append(buf.data(), static_cast<std::size_t>(got));
            const std::size_t len = complete_reply(o.protocol, c.in);
            if (len == 0) continue;
            const std::uint64_t took = seen_at - c.sent_at;
            if (len == std::string_view::npos || len != c.in.size()) {
                fail("malformed answer for %s: \"%s\"", address(c.user).c_str(), c.in.c_str());
                break;
            }
            if (o.check) {
                const std::string want = expected_for(o.protocol, c.user);
                if (c.in != want) {
                    fail("wrong answer for %s: \"%s\", expected \"%s\"", address(c.user).c_str(), c.in.c_str(), want.c_str());
                    break;
                }
            }
            c.in.clear();
            result.latencies_ns.push_back(static_cast<std::uint32_t>(std::min<std::uint64_t>(took, UINT32_MAX)));
            if (!start_next(k)) --active;
        }
    }
    for (auto& c : cs)
        if (c.fd >= 0) ::close(c.fd);
    ::close(ep);
}

double cpu_seconds() {
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

[[noreturn]] void usage() {
    std::fprintf(stderr,
                 "usage: bench_load_client --socketmap|--policy SPEC --connections C --requests N --users U\n"
                 "                         [--check] [--threads T] [--timeout SECONDS]\n"
                 "  SPEC: inet:HOST:PORT or unix:PATH\n");
    std::exit(2);
}

Options parse(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage();
            return argv[++i];
        };
        auto number = [&]() -> std::uint64_t {
            const std::string v = value();
            std::uint64_t n = 0;
            const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
            if (ec != std::errc() || end != v.data() + v.size() || n == 0) usage();
            return n;
        };
        if (a == "--socketmap" || a == "--policy") {
            o.protocol = a == "--socketmap" ? Protocol::socketmap : Protocol::policy;
            o.spec = value();
        } else if (a == "--connections") o.connections = static_cast<int>(std::min<std::uint64_t>(number(), 10000));
        else if (a == "--requests") o.requests = number();
        else if (a == "--users") o.users = number();
        else if (a == "--threads") o.threads = static_cast<int>(std::min<std::uint64_t>(number(), 64));
        else if (a == "--timeout") o.timeout_seconds = static_cast<int>(std::min<std::uint64_t>(number(), 3600));
        else if (a == "--check") o.check = true;
        else usage();
    }
    if (o.spec.empty()) usage();
    o.threads = std::min(o.threads, o.connections);
    return o;
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    std::atomic<std::uint64_t> next_request{0};
    std::vector<ThreadResult> results(static_cast<std::size_t>(o.threads));
    for (auto& r : results) r.latencies_ns.reserve(o.requests / static_cast<std::uint64_t>(o.threads) + 1);
    const double cpu_before = cpu_seconds();
    const std::uint64_t start = now_ns();
    std::vector<std::thread> threads;
    for (int t = 0; t < o.threads; ++t) {
        const int conns = o.connections / o.threads + (t < o.connections % o.threads ? 1 : 0);
        threads.emplace_back(run_thread, std::cref(o), conns, std::ref(next_request), std::ref(results[t]));
    }
    for (auto& t : threads) t.join();
    const double seconds = static_cast<double>(now_ns() - start) / 1e9;
    const double cpu = cpu_seconds() - cpu_before;
    if (g_failed) return 1;
    std::vector<std::uint32_t> all;
    all.reserve(o.requests);
    for (auto& r : results) all.insert(all.end(), r.latencies_ns.begin(), r.latencies_ns.end());
    if (all.size() != o.requests) {
        std::fprintf(stderr, "bench_load_client: %zu answers for %llu requests\n", all.size(),
                     static_cast<unsigned long long>(o.requests));
        return 1;
    }
    auto percentile = [&](double p) {
        const std::size_t k = std::min(all.size() - 1, static_cast<std::size_t>(p * static_cast<double>(all.size())));
        std::nth_element(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k), all.end());
        return static_cast<double>(all[k]) / 1000.0;
    };
    const double p50 = percentile(0.50), p99 = percentile(0.99);
    std::printf("{\"requests\": %llu, \"connections\": %d, \"threads\": %d, \"checked\": %s, \"seconds\": %.4f, "
                "\"requests_per_second\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"cpu_seconds\": %.3f, "
                "\"cpu_share\": %.3f}\n",
                static_cast<unsigned long long>(o.requests), o.connections, o.threads, o.check ? "true" : "false",
                seconds, static_cast<double>(o.requests) / seconds, p50, p99, cpu, cpu / seconds);
    return 0;
}
