// BatchIo over real sockets, through io_uring and through plain system calls: the event loop
// must not be able to tell the two apart.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <vector>

#include "batch_io.hpp"
#include "coexist/system_error.hpp"

using namespace coexist;
using namespace coexist::policyd;

namespace {

// A connected pair of non-blocking unix stream sockets: [0] is the server's end.
struct SocketPair {
    FileDescriptor ends[2];
    SocketPair() {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
        ends[0] = FileDescriptor(fds[0]);
        ends[1] = FileDescriptor(fds[1]);
    }
    int server() const { return ends[0].get(); }
    int client() const { return ends[1].get(); }
};

std::string drain(int fd) {
    std::string out;
    char buffer[65536];
    ssize_t n;
    while ((n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT)) > 0) out.append(buffer, static_cast<std::size_t>(n));
    return out;
}

}  // namespace

TEST_CASE("BatchIo gives each operation its own result, in the order queued") {
    const bool use_io_uring = GENERATE(true, false);
    BatchIo io(use_io_uring, 8);
    if (use_io_uring && !io.uses_io_uring()) {
        WARN("io_uring is not available here (" << io.unavailable_reason() << "): only system calls tested");
        return;
    }
    CHECK(io.uses_io_uring() == use_io_uring);
    if (!use_io_uring) CHECK(io.unavailable_reason() == "io_uring = no in the configuration");

    SocketPair ready, quiet, gone, listening, vanished, full;
    REQUIRE(::send(ready.client(), "hello", 5, 0) == 5);
    gone.ends[1] = FileDescriptor();      // the client hung up: end of file
    vanished.ends[1] = FileDescriptor();  // nobody to send to: EPIPE, and no SIGPIPE
    const std::string big(4 << 20, 'x');  // more than a unix socket buffers

    std::vector<char> in_ready(64), in_quiet(64), in_gone(64);
    io.receive(ready.server(), in_ready);
    io.receive(quiet.server(), in_quiet);
    io.receive(gone.server(), in_gone);
    io.send(listening.server(), "reply\n");
    io.send(vanished.server(), "lost\n");
    io.send(full.server(), big);
    const auto done = io.run();
    const std::vector<long> results(done.begin(), done.end());
    REQUIRE(results.size() == 6);

    CHECK(results[0] == 5);
    CHECK(std::string(in_ready.data(), 5) == "hello");
    CHECK(results[1] == -EAGAIN);
    CHECK(results[2] == 0);
    CHECK(results[3] == 6);
    CHECK(drain(listening.client()) == "reply\n");
    CHECK(results[4] == -EPIPE);
    // A full socket takes part of a send; the next one finds no room at all.
    REQUIRE(results[5] > 0);
    CHECK(results[5] < static_cast<long>(big.size()));

    io.send(full.server(), big);
    io.receive(quiet.server(), in_quiet);
    const auto again = io.run();
    REQUIRE(again.size() == 2);
    CHECK(again[0] == -EAGAIN);
    CHECK(again[1] == -EAGAIN);
    CHECK(drain(full.client()).size() == static_cast<std::size_t>(results[5]));

    // An empty queue runs to an empty answer; the queue's bound is a bug when crossed.
    CHECK(io.run().empty());
    for (int i = 0; i < 8; ++i) io.receive(quiet.server(), in_quiet);
    CHECK_THROWS_AS(io.receive(quiet.server(), in_quiet), std::logic_error);
    CHECK(io.run().size() == 8);
}

TEST_CASE("BatchIo reports a closed descriptor as an error of that operation only") {
    const bool use_io_uring = GENERATE(true, false);
    BatchIo io(use_io_uring, 4);
    SocketPair pair;
    REQUIRE(::send(pair.client(), "x", 1, 0) == 1);
    std::vector<char> buffer(16), other(16);
    io.receive(-1, buffer);
    io.receive(pair.server(), other);
    const auto results = io.run();
    REQUIRE(results.size() == 2);
    CHECK(results[0] == -EBADF);
    CHECK(results[1] == 1);
}
