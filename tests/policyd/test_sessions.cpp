// Sessions over a scripted route(): what goes in on the wire, what comes out, what is logged.
#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "coexist/canonical_address.hpp"
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
        {"Ann+news@contoso.com", {Action::rewrite, "ann+news@o365.contoso.com", ""}},
        {"bob@contoso.com", {Action::relay, "", ""}},
        {"dan@contoso.com", {Action::dual, "dan@o365.contoso.com", ""}},
        {"x@contoso.com", {Action::reject, "", "unknown user"}},
        {"t@contoso.com", {Action::tempfail, "", "map unavailable"}},
        // A sender's quoted local part that tries to end to=<...> early and forge the fields after it.
        {"\"x>, action=rewrite, new=<evil@o365.contoso.com> x\"@contoso.com", {Action::reject, "", "unknown user"}},
        {"\"y>, x=<z>\"@contoso.com", {Action::rewrite, "\"y>, x=<z>\"@o365.contoso.com", ""}},
    };
    std::vector<std::string> calls;
    std::vector<std::string> log;
    SessionServices services{
        [this](const Address& a) {
            // Keyed by the external form, as route() is asked for it (the domain lowercased).
            const std::string r = external_form(a.local + "@" + a.domain);
            calls.push_back(r);
            const auto it = table.find(r);
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
    // route() only for RCPT; by default, a log line only for the refusal and the deferral.
    CHECK(router.calls == std::vector<std::string>{"ann@contoso.com", "x@contoso.com", "bob@contoso.com",
                                                   "dan@contoso.com", "t@contoso.com", "foo@example.com"});
    REQUIRE(router.log.size() == 2);
    CHECK(router.log[0] ==
          "3F2A1C: to=<x@contoso.com>, action=reject, detail=\"unknown user\", reply=\"550 5.1.1 User unknown\"");
    CHECK(router.log[1] == "NOQUEUE: to=<t@contoso.com>, action=tempfail, detail=\"map unavailable\", "
                           "reply=\"DEFER_IF_PERMIT 4.3.0 Temporary routing failure, try again later\"");
    CHECK_FALSE(session.mid_request());
}

TEST_CASE("policy session: log_lookups = yes logs every decided RCPT, DUNNO included") {
    ScriptedRouter router;
    router.services.log_lookups = true;
    PolicySession session(router.services, kLimits);
    const auto ex = run(session,
                        "request=smtpd_access_policy\nprotocol_state=CONNECT\nclient_address=127.0.0.1\n\n" +
                            rcpt("ann@contoso.com") + rcpt("x@contoso.com", "3F2A1C") + rcpt("bob@contoso.com") +
                            rcpt("foo@example.com"),
                        4096);
    CHECK(ex.replies == "action=DUNNO\n\naction=DUNNO\n\naction=550 5.1.1 User unknown\n\naction=DUNNO\n\n"
                        "action=DUNNO\n\n");
    // One line per decision (route() called), none for CONNECT.
    CHECK(router.log == std::vector<std::string>{
                            "NOQUEUE: to=<ann@contoso.com>, action=rewrite, new=<ann@o365.contoso.com>, reply=\"DUNNO\"",
                            "3F2A1C: to=<x@contoso.com>, action=reject, detail=\"unknown user\", "
                            "reply=\"550 5.1.1 User unknown\"",
                            "NOQUEUE: to=<bob@contoso.com>, action=relay, reply=\"DUNNO\"",
                            "NOQUEUE: to=<foo@example.com>, action=foreign, reply=\"DUNNO\"",
                        });
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
    // By default only what changes the mail is logged: rewrites and copies (virtual), the
    // refusal (recipients), the deferral, and the requests we could not answer. NOTFOUND for a
    // user who stays, the probes and OK from recipients are not.
    std::vector<std::string> logged_keys;
    for (const auto& line : router.log) {
        const auto to = line.find("to=<");
        logged_keys.push_back(to == std::string::npos ? line.substr(0, line.find(',')) : line.substr(0, line.find('>') + 1));
    }
    CHECK(logged_keys == std::vector<std::string>{
                             "socketmap virtual: to=<ann@contoso.com>",
                             "socketmap virtual: to=<Ann+news@Contoso.com>",
                             "socketmap virtual: to=<dan@contoso.com>",
                             "socketmap virtual: to=<t@contoso.com>",
                             "socketmap recipients: to=<x@contoso.com>",
                             "socketmap: unknown table \"transports\"",
                             "socketmap: request \"nospace\" is not \"name key\"",
                         });
    CHECK(router.log[0] == "socketmap virtual: to=<ann@contoso.com>, action=rewrite, new=<ann@o365.contoso.com>, "
                           "reply=\"OK ann@o365.contoso.com\"");
    CHECK(router.log[4] == "socketmap recipients: to=<x@contoso.com>, action=reject, detail=\"unknown user\", "
                           "reply=\"NOTFOUND\"");
}

// Postfix's own probes (bare domains, "*") and every key the address parser refuses: NOTFOUND
// from every table, without asking route(). route() would call an unreadable key "foreign", and
// the recipients table would answer OK for it, even in a reject domain.
TEST_CASE("socketmap session: a key that is no address is NOTFOUND and never routed") {
    const std::vector<std::string> keys{
        "contoso.com", "*", "@contoso.com", "ann@", "ann",
        // Postfix asks for "\" ann\"@contoso.com" first, then for its internal form
        // " ann@contoso.com", which must not be read as ann@contoso.com (rewritten to ann's
        // mailbox, where the policy service refuses the same recipient as unknown).
        " ann@contoso.com", "\tann@contoso.com", "ann@contoso.com ",
        "ann@contoso.com>", "<ann@contoso.com", "ann\x01@contoso.com", "ann@conto so.com", "ann@contoso_com!",
        std::string(2000, 'a') + "@contoso.com"};
    ScriptedRouter router;
    SocketmapSession session(router.services, kLimits);
    std::string stream, expected;
    for (const std::string table : {"virtual", "recipients", "transport"})
        for (const auto& key : keys) {
            stream += encode_netstring(table + " " + key);
            expected += encode_netstring("NOTFOUND ");
        }
    // The addresses among the look-alikes are routed: a quoted blank, a quoted '@'.
    stream += encode_netstring("recipients \" ann\"@contoso.com") + encode_netstring("recipients \"a@b\"@contoso.com");
    expected += encode_netstring("OK foreign") + encode_netstring("OK foreign");
    const auto ex = run(session, stream, 4096);
    CHECK(ex.open);
    CHECK(ex.replies == expected);
    CHECK(router.calls == std::vector<std::string>{"\" ann\"@contoso.com", "\"a@b\"@contoso.com"});
}

TEST_CASE("socketmap session: log_lookups = yes logs every request, the probes included") {
    ScriptedRouter router;
    router.services.log_lookups = true;
    SocketmapSession session(router.services, kLimits);
    const auto ex = run(session,
                        encode_netstring("virtual bob@contoso.com") + encode_netstring("virtual contoso.com") +
                            encode_netstring("recipients bob@contoso.com") + encode_netstring("virtual ann@contoso.com"),
                        4096);
    CHECK(ex.replies == encode_netstring("NOTFOUND ") + encode_netstring("NOTFOUND ") + encode_netstring("OK relay") +
                            encode_netstring("OK ann@o365.contoso.com"));
    CHECK(router.log == std::vector<std::string>{
                            "socketmap virtual: to=<bob@contoso.com>, action=relay, reply=\"NOTFOUND\"",
                            "socketmap virtual: key=<contoso.com>, not an address, reply=\"NOTFOUND\"",
                            "socketmap recipients: to=<bob@contoso.com>, action=relay, reply=\"OK relay\"",
                            "socketmap virtual: to=<ann@contoso.com>, action=rewrite, new=<ann@o365.contoso.com>, "
                            "reply=\"OK ann@o365.contoso.com\"",
                        });
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

TEST_CASE("shadow mode: the policy service refuses and defers nothing, logs and counts what it would have done") {
    ScriptedRouter router;
    router.services.shadow = true;
    std::vector<std::string> counted;
    router.services.count = [&](std::string_view service, Action a) {
        counted.push_back(std::string(service) + " " + std::string(to_string(a)));
    };
    PolicySession session(router.services, kLimits);
    const auto ex = run(session, rcpt("x@contoso.com", "ABC") + rcpt("t@contoso.com") + rcpt("ann@contoso.com"), 4096);
    CHECK(ex.replies == "action=DUNNO\n\naction=DUNNO\n\naction=DUNNO\n\n");
    // Logged as the decision would have been without shadow mode: the refusal and the deferral
    // (ann's DUNNO only with log_lookups), each with what it would have answered.
    REQUIRE(router.log.size() == 2);
    CHECK(router.log[0] == R"(ABC: to=<x@contoso.com>, action=reject, detail="unknown user", reply="DUNNO", shadow=yes, )"
                           R"(would_reply="550 5.1.1 User unknown")");
    CHECK_THAT(router.log[1], Catch::Contains("action=tempfail") && Catch::Contains("would_reply=\"DEFER_IF_PERMIT 4.3.0"));
    CHECK(counted == std::vector<std::string>{"policy reject", "policy tempfail", "policy rewrite"});

    router.log.clear();
    router.services.log_lookups = true;
    PolicySession verbose(router.services, kLimits);
    run(verbose, rcpt("ann@contoso.com"), 4096);
    CHECK(router.log == std::vector<std::string>{
                            "NOQUEUE: to=<ann@contoso.com>, action=rewrite, new=<ann@o365.contoso.com>, reply=\"DUNNO\", "
                            "shadow=yes"});
}

TEST_CASE("shadow mode: the socketmap rewrites nothing and accepts every recipient") {
    ScriptedRouter router;
    router.services.shadow = true;
    std::vector<std::string> counted;
    router.services.count = [&](std::string_view service, Action a) {
        counted.push_back(std::string(service) + " " + std::string(to_string(a)));
    };
    SocketmapSession session(router.services, kLimits);
    const auto ex = run(session,
                        encode_netstring("virtual ann@contoso.com") + encode_netstring("recipients x@contoso.com") +
                            encode_netstring("recipients t@contoso.com"),
                        4096);
    CHECK(ex.replies == encode_netstring("NOTFOUND ") + encode_netstring("OK shadow") + encode_netstring("OK shadow"));
    REQUIRE(router.log.size() == 3);
    CHECK(router.log[0] == R"(socketmap virtual: to=<ann@contoso.com>, action=rewrite, new=<ann@o365.contoso.com>, )"
                           R"(reply="NOTFOUND", shadow=yes, would_reply="OK ann@o365.contoso.com")");
    CHECK_THAT(router.log[1], Catch::EndsWith(R"(reply="OK shadow", shadow=yes, would_reply="NOTFOUND")"));
    CHECK(counted == std::vector<std::string>{"virtual rewrite", "recipients reject", "recipients tempfail"});
}

TEST_CASE("sessions tell the connections hook when they begin and end") {
    ScriptedRouter router;
    std::vector<std::string> events;
    router.services.connections = [&](std::string_view protocol, int delta) {
        events.push_back(std::string(protocol) + (delta > 0 ? " +1" : " -1"));
    };
    {
        PolicySession policy(router.services, kLimits);
        SocketmapSession socketmap(router.services, kLimits);
        CHECK(events == std::vector<std::string>{"policy +1", "socketmap +1"});
    }
    CHECK(events == std::vector<std::string>{"policy +1", "socketmap +1", "socketmap -1", "policy -1"});
}

TEST_CASE("a sender's address cannot forge the fields of a policy or socketmap log line") {
    ScriptedRouter router;
    PolicySession policy(router.services, kLimits);
    // smtpd sends recipient= unquoted (internal form); route() gets it quoted back.
    run(policy, rcpt("x>, action=rewrite, new=<evil@o365.contoso.com> x@contoso.com", "3F2A1C"), 4096);
    SocketmapSession socketmap(router.services, kLimits);
    run(socketmap, encode_netstring("virtual \"y>, x=<z>\"@contoso.com"), 4096);
    CHECK(router.log == std::vector<std::string>{
                            // Quoted, as Postfix logs it: unquoted, "x?, action=rewrite" read as the action.
                            "3F2A1C: to=<\"x?, action=rewrite, new=?evil@o365.contoso.com? x\"@contoso.com>, "
                            "action=reject, detail=\"unknown user\", reply=\"550 5.1.1 User unknown\"",
                            "socketmap virtual: to=<\"y?, x=?z?\"@contoso.com>, action=rewrite, "
                            "new=<\"y?, x=?z?\"@o365.contoso.com>, reply=\"OK \\\"y>, x=<z>\\\"@o365.contoso.com\"",
                        });
}

TEST_CASE("socketmap: a key whose local part begins with a route is that local part, not the user after it") {
    // Postfix asks for @b:dan@contoso.com after stripping "@a:" from <"@a:@b:dan"@contoso.com>:
    // answering for dan (dual) echoed the key unquoted, which Postfix read as one route-address
    // (the old system's copy lost, helper 70). Asked as it is, it is nobody: NOTFOUND.
    ScriptedRouter router;
    SocketmapSession socketmap(router.services, kLimits);
    const auto ex = run(socketmap, encode_netstring("virtual @b.example:dan@contoso.com") +
                                       encode_netstring("virtual \"@b.example:dan\"@contoso.com"), 4096);
    CHECK(ex.replies == encode_netstring("NOTFOUND ") + encode_netstring("NOTFOUND "));
    CHECK(router.calls == std::vector<std::string>{R"("@b.example:dan"@contoso.com)", R"("@b.example:dan"@contoso.com)"});
}

TEST_CASE("policy session: a recipient no parser reads goes to route_unreadable, as it is") {
    // The milter decides on such a recipient as an unknown user of the managed domain it names
    // (route.cpp): the policy service must answer the same, not DUNNO.
    ScriptedRouter router;
    const std::string unreadable = std::string(1100, 'a') + "@contoso.com";
    std::vector<std::string> asked;
    SessionServices services = router.services;
    PolicySession without(services, kLimits);  // no hook: not ours, as before
    CHECK(run(without, rcpt(unreadable), 4096).replies == "action=DUNNO\n\n");
    services.route_unreadable = [&](std::string_view r) {
        asked.emplace_back(r);
        return RoutingDecision{Action::reject, "", std::string(kNotAnAddress)};
    };
    PolicySession session(services, kLimits);
    const auto ex = run(session, rcpt(unreadable) + rcpt("bob@contoso.com"), 4096);
    CHECK(ex.replies == "action=550 5.1.1 User unknown\n\naction=DUNNO\n\n");
    CHECK(asked == std::vector<std::string>{unreadable});
    CHECK(router.calls == std::vector<std::string>{"bob@contoso.com"});
}

TEST_CASE("socketmap session: the recipients table asks route_unreadable for a key no parser reads") {
    // Walk-through: RCPT TO with a 1,100-byte local part in a relay domain (unknown_recipient =
    // relay) was relayed by the milter and passed by the policy service, as `coexist-map route`
    // says, but the socketmap's recipients table answered NOTFOUND, so a relay using way 3
    // refused it with 550; and in a reject domain with no user in the map (never reject on
    // doubt) it refused what every other way defers.
    ScriptedRouter router;
    const std::string unreadable = std::string(1100, 'a') + "@contoso.com";
    std::vector<std::string> asked;
    SessionServices services = router.services;
    services.route_unreadable = [&](std::string_view r) {
        asked.emplace_back(r);
        if (r.substr(r.find('@') + 1) == "contoso.com") return RoutingDecision{Action::relay, "", std::string(kNotAnAddress)};
        if (r.substr(r.find('@') + 1) == "fabrikam.com") return RoutingDecision{Action::tempfail, "", "no user"};
        return RoutingDecision{Action::foreign, "", std::string(kNotAnAddress)};
    };
    const std::string doubt = std::string(1100, 'b') + "@fabrikam.com";
    SocketmapSession session(services, SessionLimits{8192, 100});
    // The re-check: the internal form Postfix asks after the external one found nothing ("john
    // doe@fabrikam.com" of a known user who stays) must not be deferred by the rewrite tables
    // while unknown users of fabrikam.com are: only the recipients table asks route_unreadable.
    const auto ex = run(session,
                        encode_netstring("recipients " + unreadable) + encode_netstring("virtual " + unreadable) +
                            encode_netstring("recipients " + doubt) + encode_netstring("virtual contoso.com") +
                            encode_netstring("transport *") + encode_netstring("virtual john doe@fabrikam.com") +
                            encode_netstring("transport john doe@fabrikam.com") + encode_netstring("virtual " + doubt),
                        8192);
    CHECK(ex.replies == encode_netstring("OK relay") + encode_netstring("NOTFOUND ") +
                            encode_netstring("TEMP no user") + encode_netstring("NOTFOUND ") +
                            encode_netstring("NOTFOUND ") + encode_netstring("NOTFOUND ") +
                            encode_netstring("NOTFOUND ") + encode_netstring("NOTFOUND "));
    CHECK(asked == std::vector<std::string>{unreadable, doubt});
    CHECK(router.calls.empty());
}
