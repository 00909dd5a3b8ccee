// The policyd event loop over real sockets: a failure while serving one client closes that
// client's connection and nothing else (before, the exception ended the whole daemon).
#include <catch2/catch.hpp>

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>

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

}  // namespace

TEST_CASE("an exception while serving one connection closes it and the server goes on") {
    test::TempDir dir;
    const std::string path = dir.file("policy.sock");
    PolicydConfig limits;
    const SessionServices services{
        [](std::string_view recipient) -> RoutingDecision {
            if (recipient == "boom@contoso.com") throw std::runtime_error("injected failure");
            return {Action::reject, {}, "unknown user"};
        },
        [](const std::string&) {},
    };
    std::vector<Listener> listeners;
    listeners.push_back({Protocol::policy, listen_on({"unix:" + path, "", 0600}, 16), "unix:" + path});

    // The server takes SIGTERM through its signalfd; blocked here first, so the thread inherits
    // the mask and a SIGTERM sent to it before it runs waits instead of killing the test.
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    REQUIRE(::pthread_sigmask(SIG_BLOCK, &term, nullptr) == 0);
    std::exception_ptr escaped;
    std::thread loop([&] {
        try {
            Server server(limits, services, std::move(listeners));
            server.run();
        } catch (...) {
            escaped = std::current_exception();
        }
    });

    const FileDescriptor steady = connect_to(path);
    CHECK(ask(steady, rcpt_request("nobody@contoso.com")) == "action=550 5.1.1 User unknown\n\n");

    const FileDescriptor failing = connect_to(path);
    CHECK(ask(failing, rcpt_request("boom@contoso.com")).empty());  // closed, no reply

    // The other client, connected all along, and a newcomer are still served.
    CHECK(ask(steady, rcpt_request("nobody@contoso.com")) == "action=550 5.1.1 User unknown\n\n");
    const FileDescriptor newcomer = connect_to(path);
    CHECK(ask(newcomer, rcpt_request("nobody@contoso.com")) == "action=550 5.1.1 User unknown\n\n");

    ::pthread_kill(loop.native_handle(), SIGTERM);
    loop.join();
    CHECK_FALSE(escaped);
}
