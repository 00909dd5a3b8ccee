// Sessions over a scripted route(): what goes in on the wire, what comes out, what is logged.
#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "netstring.hpp"
#include "sessions.hpp"
#include "../fuzz/chunked_feed.hpp"

using namespace coexist;
using namespace coexist::policyd;
using coexist::test::feed_in_pieces;
using coexist::test::kReadSizes;

namespace {

// A stand-in for route(): decisions by exact recipient, foreign otherwise; remembers its calls.
struct ScriptedRouter {
    std::map<std::string, RoutingDecision> table{
        {"ann@contoso.com", {Action::rewrite, "ann@o365.contoso.com", ""}},
        {"Ann+news@Contoso.com", {Action::rewrite, "ann+news@o365.contoso.com", ""}},
        {"bob@contoso.com", {Action::relay, "", ""}},
        {"dan@contoso.com", {Action::dual, "dan@o365.contoso.com", ""}},
        {"x@contoso.com", {Action::reject, "", "unknown user"}},
        {"t@contoso.com", {Action::tempfail, "", "map unavailable"}},
    };
    std::vector<std::string> calls;
    std::vector<std::string> log;
    SessionServices services{
        [this](std::string_view r) {
            calls.emplace_back(r);
            const auto it = table.find(std::string(r));
            return it == table.end() ? RoutingDecision{Action::foreign, "", ""} : it->second;
        },
        [this](const std::string& line) { log.push_back(line); },
    };
};

const SessionLimits kLimits{4096, 100};

std::string rcpt(const std::string& recipient, const std::string& queue_id = "") {
    return "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=s@example.org\nrecipient=" + recipient +
           "\nqueue_id=" + queue_id + "\n\n";
}

struct Exchange {
    std::string replies;
    bool open = true;
};

Exchange run(Session& session, std::string_view stream, std::size_t read_size) {
    Exchange out;
    feed_in_pieces(stream, read_size, [&](std::string_view piece) {
        out.open = session.consume(piece, out.replies);
        return out.open;
    });
    return out;
}

}  // namespace

TEST_CASE("policy session answers a pipelined stream the same at every read size") {
    const auto read_size = GENERATE(from_range(kReadSizes));
    CAPTURE(read_size);
    ScriptedRouter router;
    PolicySession session(router.services, kLimits);
    const std::string stream = "request=smtpd_access_policy\nprotocol_state=CONNECT\nclient_address=127.0.0.1\n\n" +
                               rcpt("ann@contoso.com") + rcpt("x@contoso.com", "3F2A1C") + rcpt("bob@contoso.com") +
                               rcpt("dan@contoso.com") + rcpt("t@contoso.com") + rcpt("foo@example.com") +
                               "request=smtpd_access_policy\nprotocol_state=DATA\nrecipient=x@contoso.com\n\n";
    const auto ex = run(session, stream, read_size);
    CHECK(ex.open);
    CHECK(ex.replies ==
          "action=DUNNO\n\n"                                                            // CONNECT
          "action=DUNNO\n\n"                                                            // rewrite
          "action=550 5.1.1 User unknown\n\n"                                           // reject
          "action=DUNNO\n\n"                                                            // relay
          "action=DUNNO\n\n"                                                            // dual
          "action=DEFER_IF_PERMIT 4.3.0 Temporary routing failure, try again later\n\n"  // tempfail
          "action=DUNNO\n\n"                                                            // foreign
          "action=DUNNO\n\n");                                                          // DATA
    // route() only for RCPT; one log line per decision.
    CHECK(router.calls == std::vector<std::string>{"ann@contoso.com", "x@contoso.com", "bob@contoso.com",
                                                   "dan@contoso.com", "t@contoso.com", "foo@example.com"});
    REQUIRE(router.log.size() == 6);
    CHECK(router.log[0] == "NOQUEUE: to=<ann@contoso.com>, action=rewrite, new=<ann@o365.contoso.com>, reply=DUNNO");
    CHECK(router.log[1] ==
          "3F2A1C: to=<x@contoso.com>, action=reject, detail=\"unknown user\", reply=550 5.1.1 User unknown");
    CHECK_FALSE(session.mid_request());
}

TEST_CASE("policy session drops a broken client without a reply") {
    ScriptedRouter router;
    PolicySession session(router.services, kLimits);
    const auto ex = run(session, rcpt("ann@contoso.com") + "garbage without equals\n\n" + rcpt("x@contoso.com"), 16);
    CHECK_FALSE(ex.open);
    CHECK(ex.replies == "action=DUNNO\n\n");  // the good request before it was answered
    CHECK_THAT(std::string(session.error()), Catch::Contains("name=value"));
}

TEST_CASE("policy session refuses an oversized line after at most one line of buffering") {
    ScriptedRouter router;
    PolicySession session(router.services, kLimits);
    std::string replies;
    bool open = true;
    std::size_t fed = 0;
    const std::string chunk(4096, 'A');
    while (open && fed < (1u << 20)) {  // a 1 MiB line
        open = session.consume(chunk, replies);
        fed += chunk.size();
    }
    CHECK_FALSE(open);
    CHECK(fed <= 2 * 4096);
    CHECK(replies.empty());
}

TEST_CASE("policy session knows when a request is half received") {
    ScriptedRouter router;
    PolicySession session(router.services, kLimits);
    std::string replies;
    CHECK(session.consume("request=smtpd_access_policy\nprotocol_st", replies));
    CHECK(session.mid_request());
    CHECK(replies.empty());
}

TEST_CASE("socketmap session answers a pipelined stream the same at every read size") {
    const auto read_size = GENERATE(from_range(kReadSizes));
    CAPTURE(read_size);
    ScriptedRouter router;
    SocketmapSession session(router.services, kLimits);
    std::string stream;
    for (const char* request : {"virtual ann@contoso.com", "virtual Ann+news@Contoso.com", "virtual bob@contoso.com",
                                "virtual dan@contoso.com", "virtual x@contoso.com", "virtual t@contoso.com",
                                "virtual foo@example.com", "virtual contoso.com", "virtual *",
                                "virtual dan@o365.contoso.com", "recipients x@contoso.com",
                                "recipients bob@contoso.com", "recipients ann@contoso.com", "transports a@contoso.com",
                                "nospace"})
        stream += encode_netstring(request);
    const auto ex = run(session, stream, read_size);
    CHECK(ex.open);
    std::string expected;
    for (const char* reply : {"OK ann@o365.contoso.com", "OK ann+news@o365.contoso.com", "NOTFOUND ",
                              "OK dan@contoso.com,dan@o365.contoso.com", "NOTFOUND ", "TEMP map unavailable",
                              "NOTFOUND ", "NOTFOUND ", "NOTFOUND ", "NOTFOUND ", "NOTFOUND ", "OK relay", "OK rewrite"})
        expected += encode_netstring(reply);
    expected += encode_netstring("PERM unknown table \"transports\"; this server has virtual, recipients and transport");
    expected += encode_netstring("PERM request is not \"name key\"");
    CHECK(ex.replies == expected);
    // Bare domains and '*' never reach route().
    CHECK(std::find(router.calls.begin(), router.calls.end(), "contoso.com") == router.calls.end());
    CHECK(std::find(router.calls.begin(), router.calls.end(), "*") == router.calls.end());
    CHECK(router.log.size() == 15);
}

TEST_CASE("socketmap session answers PERM and closes when the framing breaks") {
    const auto read_size = GENERATE(from_range(kReadSizes));
    CAPTURE(read_size);
    struct Case {
        std::string stream;
        std::string reason;
    };
    const auto c = GENERATE(values<Case>({
        {"1000000000:", "longer than"},
        {"23:virtual ann@contoso.comXYZ", "does not match"},
        {std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11), "not a decimal"},  // a TLS hello
        {"GET / HTTP/1.0\r\n\r\n", "not a decimal"},
    }));
    ScriptedRouter router;
    SocketmapSession session(router.services, kLimits);
    const auto ex = run(session, encode_netstring("virtual ann@contoso.com") + c.stream, read_size);
    CHECK_FALSE(ex.open);
    NetstringDecoder decoder(1000);
    std::string_view replies = ex.replies;
    auto r = decoder.feed(replies);
    REQUIRE(r.status == NetstringDecoder::Status::complete);
    CHECK(decoder.payload() == "OK ann@o365.contoso.com");
    replies.remove_prefix(r.consumed);
    r = decoder.feed(replies);
    REQUIRE(r.status == NetstringDecoder::Status::complete);
    CHECK_THAT(decoder.payload(), Catch::StartsWith("PERM ") && Catch::Contains(c.reason));
}

TEST_CASE("policy session: recipient= is Postfix's internal form, decided as its external form") {
    // smtpd sends RCPT TO:<"x y"@contoso.com> as recipient=x y@contoso.com (extract_addr()
    // internalizes it); route() gets the quoted form the socketmap and the milter decide on.
    ScriptedRouter router;
    router.table[R"("x y"@contoso.com)"] = {Action::reject, "", "unknown user"};
    PolicySession session(router.services, kLimits);
    const auto ex = run(session, rcpt("x y@contoso.com") + rcpt("bob@contoso.com"), 4096);
    CHECK(ex.replies == "action=550 5.1.1 User unknown\n\naction=DUNNO\n\n");
    CHECK(router.calls == std::vector<std::string>{R"("x y"@contoso.com)", "bob@contoso.com"});
}
