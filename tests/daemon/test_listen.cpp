// The daemons' listening sockets (daemon/listen.hpp): modes, stale sockets, loopback inet/inet6.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <fstream>

#include "coexist/listen.hpp"
#include "fixture.hpp"

using namespace coexist;

TEST_CASE("listen_on a unix socket applies the mode and replaces a stale socket file") {
    test::TempDir dir;
    SocketConfig cfg{"unix:" + dir.file("s.sock"), "", 0660};
    {
        FileDescriptor fd = listen_on(cfg, 16);
        REQUIRE(fd);
        struct stat st{};
        REQUIRE(::stat(dir.file("s.sock").c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 0777) == 0660);
        // A second server must not steal a socket that is in use.
        CHECK_THROWS_WITH(listen_on(cfg, 16), Catch::Contains("in use"));
    }
    // The first server is gone, its socket file stays: stale, so it is replaced.
    FileDescriptor again = listen_on(cfg, 16);
    CHECK(again);
}

TEST_CASE("a regular file where the socket should be is never removed") {
    test::TempDir dir;
    const std::string path = dir.write("not-a-socket", "precious");
    CHECK_THROWS_WITH(listen_on(SocketConfig{"unix:" + path, "", 0660}, 16), Catch::Contains("not a socket"));
    std::ifstream in(path);
    std::string content;
    in >> content;
    CHECK(content == "precious");
}

namespace {
// A port the kernel just handed out and took back: free for the next moment.
int free_port(int family) {
    FileDescriptor fd(::socket(family, SOCK_STREAM, 0));
    sockaddr_storage ss{};
    socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    ss.ss_family = static_cast<sa_family_t>(family);
    if (family == AF_INET) reinterpret_cast<sockaddr_in*>(&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr = in6addr_loopback;
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0);
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0);
    return ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                   : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}
}  // namespace

TEST_CASE("listen_on loopback inet and inet6") {
    for (int family : {AF_INET, AF_INET6}) {
        const int port = free_port(family);
        const std::string spec = family == AF_INET ? "inet:" + std::to_string(port) + "@127.0.0.1"
                                                   : "inet6:" + std::to_string(port) + "@[::1]";
        CAPTURE(spec);
        FileDescriptor fd = listen_on(SocketConfig{spec, "", 0}, 16);
        REQUIRE(fd);
        FileDescriptor client(::socket(family, SOCK_STREAM, 0));
        sockaddr_storage ss{};
        socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
        REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0);
        CHECK(::connect(client.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0);
    }
}
