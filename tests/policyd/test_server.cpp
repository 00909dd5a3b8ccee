// The policyd event loop over real sockets, with io_uring and with plain system calls: a failure
// while serving one client closes that client's connection and nothing else (before, the
// exception ended the whole daemon); a flood of pipelined requests from a client that reads its
// replies late gets every reply, in order, and the others are served meanwhile; with several
// clients at once, every decision line comes out, each client's in order.
#include <catch2/catch.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "coexist/listen.hpp"
#include "server.hpp"
#include "../core/fixture.hpp"

using namespace coexist;
using namespace coexist::policyd;

namespace {

// A bound on every wait, so a broken server fails the test instead of hanging it.
constexpr int kReplyTimeoutSeconds = 20;

FileDescriptor connect_to(const std::string& path) {
    FileDescriptor fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    timeval tv{kReplyTimeoutSeconds, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    return fd;
}

std::string rcpt_request(const std::string& recipient) {
    return "request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=" + recipient + "\n\n";
}

// The reply up to its blank line, or what came before EOF / the timeout.
std::string ask(const FileDescriptor& fd, const std::string& request) {
    REQUIRE(::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
    std::string reply;
    char c;
    while (reply.size() < 2 || reply.substr(reply.size() - 2) != "\n\n") {
        if (::recv(fd.get(), &c, 1, 0) != 1) break;
        reply.push_back(c);
    }
    return reply;
}

// A Server on its own thread, stopped by SIGTERM through its signalfd.
class ServerThread {
public:
    ServerThread(const PolicydConfig& limits, const SessionServices& services, const std::string& path) {
        std::vector<Listener> listeners;
        listeners.push_back({Protocol::policy, listen_on({"unix:" + path, "", 0600}, 16), "unix:" + path});
        // Blocked here first, so the thread inherits the mask and a SIGTERM sent to it before
        // it runs waits instead of killing the test.
        sigset_t term;
        sigemptyset(&term);
        sigaddset(&term, SIGTERM);
        REQUIRE(::pthread_sigmask(SIG_BLOCK, &term, nullptr) == 0);
        thread_ = std::thread([this, &limits, &services, listeners = std::move(listeners)]() mutable {
            try {
                Server server(limits, services, std::move(listeners));
                server.run();
            } catch (...) {
                escaped_ = std::current_exception();
            }
        });
    }
    // Stops the server; true if it ended without an exception.
    bool stop() {
        ::pthread_kill(thread_.native_handle(), SIGTERM);
        thread_.join();
        return !escaped_;
    }
    ~ServerThread() {
        if (thread_.joinable()) stop();
    }

private:
    std::thread thread_;
    std::exception_ptr escaped_;
};

PolicydConfig limits_with(bool io_uring) {
    PolicydConfig limits;
    limits.io_uring = io_uring;
    return limits;
}

}  // namespace

TEST_CASE("an exception while serving one connection closes it and the server goes on") {
    const bool io_uring = GENERATE(true, false);
    test::TempDir dir;
    const std::string path = dir.file("policy.sock");
    const PolicydConfig limits = limits_with(io_uring);
    const SessionServices services{
        [](const Address& recipient) -> RoutingDecision {
            if (recipient.local == "boom") throw std::runtime_error("injected failure");
            return {Action::reject, {}, "unknown user"};
        },
        [](const std::string&) {},
    };
    ServerThread server(limits, services, path);

    const FileDescriptor steady = connect_to(path);
    CHECK(ask(steady, rcpt_request("nobody@contoso.com")) == "action=550 5.1.1 User unknown\n\n");

    const FileDescriptor failing = connect_to(path);
    CHECK(ask(failing, rcpt_request("boom@contoso.com")).empty());  // closed, no reply

    // The other client, connected all along, and a newcomer are still served.
    CHECK(ask(steady, rcpt_request("nobody@contoso.com")) == "action=550 5.1.1 User unknown\n\n");
    const FileDescriptor newcomer = connect_to(path);
    CHECK(ask(newcomer, rcpt_request("nobody@contoso.com")) == "action=550 5.1.1 User unknown\n\n");

    CHECK(server.stop());
}

TEST_CASE("a flood of pipelined requests read late gets every reply in order, the others are served meanwhile") {
    const bool io_uring = GENERATE(true, false);
    test::TempDir dir;
    const std::string path = dir.file("policy.sock");
    const PolicydConfig limits = limits_with(io_uring);
    // Every tenth recipient is rejected, so that the order of the replies shows.
    const SessionServices services{
        [](const Address& recipient) -> RoutingDecision {
            if (recipient.local.ends_with("0")) return {Action::reject, {}, "unknown user"};
            return {Action::relay, {}, {}};
        },
        [](const std::string&) {},
    };
    ServerThread server(limits, services, path);

    // 20,000 requests (about 1.3 MB) in one stream, with replies (about 0.2 MB) larger than a
    // unix socket buffers: the server's sends fill the socket, go in part, wait for room.
    constexpr int kRequests = 20000;
    std::string flood;
    for (int i = 0; i < kRequests; ++i) flood += rcpt_request("user" + std::to_string(i) + "@contoso.com");
    const FileDescriptor flooder = connect_to(path);
    std::thread writer([&] {
        std::size_t off = 0;
        while (off < flood.size()) {
            const ssize_t n = ::send(flooder.get(), flood.data() + off, flood.size() - off, MSG_NOSIGNAL);
            if (n <= 0) break;
            off += static_cast<std::size_t>(n);
        }
    });
    // Not reading the flood's replies yet: another client is answered all the same.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const FileDescriptor other = connect_to(path);
    CHECK(ask(other, rcpt_request("user10@contoso.com")) == "action=550 5.1.1 User unknown\n\n");

    std::string replies;
    std::string expected;
    for (int i = 0; i < kRequests; ++i)
        expected += i % 10 == 0 ? "action=550 5.1.1 User unknown\n\n" : "action=DUNNO\n\n";
    char buffer[65536];
    while (replies.size() < expected.size()) {
        const ssize_t n = ::recv(flooder.get(), buffer, sizeof buffer, 0);
        if (n <= 0) break;  // the receive timeout bounds the wait
        replies.append(buffer, static_cast<std::size_t>(n));
    }
    writer.join();
    CHECK(replies.size() == expected.size());
    CHECK(replies == expected);
    CHECK(server.stop());
}

// The recipient of a decision line, "... to=<R>, ...".
std::string logged_to(const std::string& line) {
    const auto from = line.find("to=<");
    if (from == std::string::npos) return {};
    return line.substr(from + 4, line.find('>', from) - from - 4);
}

TEST_CASE("with several clients at once every decision is logged, each client's in order") {
    const bool io_uring = GENERATE(true, false);
    test::TempDir dir;
    const std::string path = dir.file("policy.sock");
    const PolicydConfig limits = limits_with(io_uring);
    std::vector<std::string> lines;  // written on the server's thread, read after stop()
    const SessionServices services{
        [](const Address&) -> RoutingDecision { return {Action::reject, {}, "unknown user"}; },
        [&lines](const std::string& line) { lines.push_back(line); },
    };
    ServerThread server(limits, services, path);

    // 4 clients at once, each 2,000 refused recipients in one stream: a 16 KiB read holds about
    // 200 requests, and a turn reads from several clients.
    constexpr int kClients = 4;
    constexpr int kRequests = 2000;
    const std::string reply = "action=550 5.1.1 User unknown\n\n";
    std::vector<std::thread> clients;
    std::vector<std::size_t> replied(kClients);
    for (int c = 0; c < kClients; ++c)
        clients.emplace_back([&, c] {
            const FileDescriptor fd = connect_to(path);
            std::string stream;
            for (int i = 0; i < kRequests; ++i)
                // fmt, not "c" + std::string: GCC 12 -O3 gives a false -Wrestrict for that form.
                stream += rcpt_request(fmt::format("c{}u{}@contoso.com", c, i));
            std::thread writer([&] {
                for (std::size_t off = 0; off < stream.size();) {
                    const ssize_t n = ::send(fd.get(), stream.data() + off, stream.size() - off, MSG_NOSIGNAL);
                    if (n <= 0) break;
                    off += static_cast<std::size_t>(n);
                }
            });
            char buffer[65536];
            while (replied[c] < reply.size() * kRequests) {
                const ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
                if (n <= 0) break;  // the receive timeout bounds the wait
                replied[c] += static_cast<std::size_t>(n);
            }
            writer.join();
        });
    for (auto& t : clients) t.join();
    CHECK(server.stop());

    for (int c = 0; c < kClients; ++c) CHECK(replied[c] == reply.size() * kRequests);
    REQUIRE(lines.size() == std::size_t{kClients} * kRequests);
    std::map<std::string, int> next;  // client prefix -> the request number its next line must have
    for (const std::string& line : lines) {
        const std::string to = logged_to(line);
        const auto u = to.find('u');
        REQUIRE(u != std::string::npos);
        const std::string client = to.substr(0, u);
        CHECK(to == fmt::format("{}u{}@contoso.com", client, next[client]++));
    }
}

TEST_CASE("a connection is active when a request completes or the socket takes replies") {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    const FileDescriptor client(fds[1]);
    const SessionServices services{
        [](const Address&) -> RoutingDecision { return {Action::reject, {}, "unknown user"}; },
        [](const std::string&) {},
    };
    const SessionLimits limits{4096, 100};
    const Clock::time_point accepted{};
    Connection c(FileDescriptor(fds[0]), std::make_unique<PolicySession>(services, limits), 1, "test", accepted);
    const auto later = accepted + std::chrono::seconds(5);
    const auto latest = accepted + std::chrono::seconds(9);

    // Half a request is no activity; the rest of it is.
    const std::string request = rcpt_request("a@contoso.com");
    const std::string first = request.substr(0, 10), rest = request.substr(10);
    CHECK(c.received(static_cast<long>(first.size()), first, later) == Connection::Next::read);
    CHECK(c.last_activity() == accepted);
    CHECK(c.received(static_cast<long>(rest.size()), rest, later) == Connection::Next::read);
    CHECK(c.last_activity() == later);
    REQUIRE(c.output() == "action=550 5.1.1 User unknown\n\n");

    // A full socket (EAGAIN) is no activity; a socket that takes part of the replies is.
    CHECK(c.sent(-EAGAIN, latest) == Connection::Next::write);
    CHECK(c.last_activity() == later);
    CHECK(c.sent(4, latest) == Connection::Next::write);
    CHECK(c.last_activity() == latest);
    CHECK(c.output() == "on=550 5.1.1 User unknown\n\n");
    CHECK(c.sent(static_cast<long>(c.output().size()), latest) == Connection::Next::read);
    CHECK(c.output().empty());
    CHECK(c.sent(-EPIPE, latest) == Connection::Next::close);
    CHECK(c.close_reason() == "write error: Broken pipe");
}
