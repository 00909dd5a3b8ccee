// Socket addresses in libmilter's syntax, as coexist.ini gives them (checked when the config is read).
#include <catch2/catch.hpp>

#include "coexist/socket_spec.hpp"

using namespace coexist;

TEST_CASE("socket specifications in libmilter syntax") {
    auto u = parse_socket_spec("unix:/run/coexist/milter.sock");
    REQUIRE(u);
    CHECK(u->family == SocketSpec::Family::unix_path);
    CHECK(u->path == "/run/coexist/milter.sock");
    CHECK(parse_socket_spec("local:/x.sock"));
    CHECK(parse_socket_spec("/x.sock"));
    auto i = parse_socket_spec("inet:8891@127.0.0.1");
    REQUIRE(i);
    CHECK(i->port == 8891);
    CHECK(i->host == "127.0.0.1");
    auto i6 = parse_socket_spec("inet6:8891@[::1]");
    REQUIRE(i6);
    CHECK(i6->host == "::1");
    CHECK(parse_socket_spec("inet6:8891@::1"));
    for (const char* bad : {"", "unix:", "unix:relative", "inet:0@127.0.0.1", "inet:70000@127.0.0.1",
                            "inet:25@localhost", "inet6:25@127.0.0.1", "tcp:25", "inet:x@127.0.0.1"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_socket_spec(bad));
    }
}
