// The decision table of design section 2, policyd and socketmap columns.
#include <catch2/catch.hpp>

#include "replies.hpp"

using namespace coexist;
using namespace coexist::policyd;

namespace {

RoutingDecision decision(Action a, std::string address = "", std::string detail = "") {
    return RoutingDecision{a, std::move(address), std::move(detail)};
}

}  // namespace

TEST_CASE("policy actions follow the decision table") {
    CHECK(policy_action(decision(Action::foreign)) == "DUNNO");
    CHECK(policy_action(decision(Action::relay)) == "DUNNO");
    CHECK(policy_action(decision(Action::rewrite, "ann@o365.contoso.com")) == "DUNNO");
    CHECK(policy_action(decision(Action::dual, "dan@o365.contoso.com")) == "DUNNO");
    CHECK(policy_action(decision(Action::reject, "", "unknown user")) == "550 5.1.1 User unknown");
    const std::string deferred(policy_action(decision(Action::tempfail, "", "map unavailable: /var/lib/coexist: EACCES")));
    CHECK_THAT(deferred, Catch::StartsWith("DEFER_IF_PERMIT 4.3.0 "));
    // The map's path and errors are for our log, not for the SMTP client.
    CHECK_THAT(deferred, !Catch::Contains("/var/lib/coexist"));
}

TEST_CASE("only RCPT with a recipient wants a decision") {
    PolicyRequest r;
    r.protocol_state = "RCPT";
    r.recipient = "ann@contoso.com";
    CHECK(policy_wants_decision(r));
    r.recipient.clear();
    CHECK_FALSE(policy_wants_decision(r));
    for (const char* state : {"CONNECT", "EHLO", "HELO", "MAIL", "DATA", "END-OF-MESSAGE", "VRFY", "ETRN", ""}) {
        PolicyRequest other;
        other.protocol_state = state;
        other.recipient = "ann@contoso.com";  // DATA carries one when there was exactly one recipient
        CAPTURE(state);
        CHECK_FALSE(policy_wants_decision(other));
    }
}

TEST_CASE("policy_reply is one attribute and an empty line") {
    CHECK(policy_reply("DUNNO") == "action=DUNNO\n\n");
}

TEST_CASE("append_policy_reply adds to what is there") {
    std::string out = "action=DUNNO\n\n";
    append_policy_reply(out, "550 5.1.1 User unknown");
    CHECK(out == "action=DUNNO\n\naction=550 5.1.1 User unknown\n\n");
}

TEST_CASE("the policy service changes the mail only by refusing or deferring") {
    CHECK(policy_changes_mail(decision(Action::reject, "", "unknown user")));
    CHECK(policy_changes_mail(decision(Action::tempfail, "", "map unavailable")));
    for (const Action a : {Action::foreign, Action::relay, Action::rewrite, Action::dual, Action::transport}) {
        CAPTURE(to_string(a));
        CHECK_FALSE(policy_changes_mail(decision(a, "x@o365.contoso.com")));
    }
}

TEST_CASE("socketmap answers that change the mail: a rewrite, a copy, a next hop, a refusal, a deferral") {
    using T = SocketmapTable;
    struct Case {
        T table;
        Action action;
        bool changes;
    };
    for (const Case c : {
             Case{T::virtual_alias, Action::rewrite, true}, Case{T::virtual_alias, Action::dual, true},
             Case{T::virtual_alias, Action::tempfail, true}, Case{T::virtual_alias, Action::relay, false},
             Case{T::virtual_alias, Action::foreign, false}, Case{T::virtual_alias, Action::reject, false},
             Case{T::virtual_alias, Action::transport, false},
             Case{T::transport, Action::transport, true}, Case{T::transport, Action::tempfail, true},
             Case{T::transport, Action::rewrite, false}, Case{T::transport, Action::relay, false},
             Case{T::transport, Action::reject, false},
             Case{T::recipients, Action::reject, true}, Case{T::recipients, Action::tempfail, true},
             Case{T::recipients, Action::relay, false}, Case{T::recipients, Action::rewrite, false},
             Case{T::recipients, Action::dual, false}, Case{T::recipients, Action::foreign, false},
         }) {
        CAPTURE(to_string(c.table), to_string(c.action));
        CHECK(socketmap_changes_mail(c.table, decision(c.action, "x@o365.contoso.com")) == c.changes);
        // The same rule as the replies: what changes nothing is what Postfix would do without us.
        const auto reply = socketmap_reply(c.table, "x@contoso.com", decision(c.action, "x@o365.contoso.com"));
        const bool unchanged = c.table == T::recipients ? reply.starts_with("OK ") : reply == kSocketmapNotFound;
        CHECK(unchanged == !c.changes);
    }
}

TEST_CASE("socketmap virtual follows the decision table") {
    const auto t = SocketmapTable::virtual_alias;
    CHECK(socketmap_reply(t, "foo@example.com", decision(Action::foreign)) == "NOTFOUND ");
    CHECK(socketmap_reply(t, "bob@contoso.com", decision(Action::relay)) == "NOTFOUND ");
    CHECK(socketmap_reply(t, "x@contoso.com", decision(Action::reject, "", "unknown user")) == "NOTFOUND ");
    CHECK(socketmap_reply(t, "Ann+news@Contoso.com", decision(Action::rewrite, "ann+news@o365.contoso.com")) ==
          "OK ann+news@o365.contoso.com");
    // dual: the key exactly as asked, then the routing address.
    CHECK(socketmap_reply(t, "Dan@Contoso.com", decision(Action::dual, "dan@o365.contoso.com")) ==
          "OK Dan@Contoso.com,dan@o365.contoso.com");
    CHECK(socketmap_reply(t, "ann@contoso.com", decision(Action::tempfail, "", "map unavailable")) ==
          "TEMP map unavailable");
}

TEST_CASE("socketmap recipients accepts all but reject") {
    const auto t = SocketmapTable::recipients;
    CHECK(socketmap_reply(t, "foo@example.com", decision(Action::foreign)) == "OK foreign");
    CHECK(socketmap_reply(t, "bob@contoso.com", decision(Action::relay)) == "OK relay");
    CHECK(socketmap_reply(t, "ann@contoso.com", decision(Action::rewrite, "ann@o365.contoso.com")) == "OK rewrite");
    CHECK(socketmap_reply(t, "dan@contoso.com", decision(Action::dual, "dan@o365.contoso.com")) == "OK dual");
    CHECK(socketmap_reply(t, "x@contoso.com", decision(Action::reject)) == "NOTFOUND ");
    CHECK_THAT(socketmap_reply(t, "x@contoso.com", decision(Action::tempfail, "", "boom")), Catch::StartsWith("TEMP "));
}

TEST_CASE("shadow mode: socketmap replies that change nothing") {
    using T = SocketmapTable;
    // virtual: never a rewrite, a copy or a deferral.
    for (auto a : {Action::foreign, Action::relay, Action::rewrite, Action::dual, Action::reject, Action::tempfail})
        CHECK(socketmap_shadow_reply(T::virtual_alias, decision(a, "x@o365.contoso.com")) == "NOTFOUND ");
    // transport: no next hop of ours, Postfix's own transport decides.
    for (auto a : {Action::transport, Action::rewrite, Action::tempfail})
        CHECK(socketmap_shadow_reply(T::transport, decision(a, "smtp:[mx.example]")) == "NOTFOUND ");
    // recipients: OK for everything, what it would have refused or deferred included.
    CHECK(socketmap_shadow_reply(T::recipients, decision(Action::reject)) == "OK shadow");
    CHECK(socketmap_shadow_reply(T::recipients, decision(Action::tempfail, "", "boom")) == "OK shadow");
    CHECK(socketmap_shadow_reply(T::recipients, decision(Action::relay)) == "OK relay");
    CHECK(socketmap_shadow_reply(T::recipients, decision(Action::rewrite, "a@o365.contoso.com")) == "OK rewrite");
}

TEST_CASE("a TEMP reason stays one printable line") {
    const auto reply = socketmap_reply(SocketmapTable::virtual_alias, "a@contoso.com",
                                       decision(Action::tempfail, "", "bad\nline\x01"));
    CHECK(reply == "TEMP bad?line?");
    CHECK_THAT(socketmap_reply(SocketmapTable::virtual_alias, "a@contoso.com", decision(Action::tempfail)),
               Catch::StartsWith("TEMP "));
}

TEST_CASE("socketmap requests split into table and key at the first space") {
    auto q = split_socketmap_request("virtual \"john doe\"@contoso.com");
    REQUIRE(q);
    CHECK(q->table == "virtual");
    CHECK(q->key == "\"john doe\"@contoso.com");
    q = split_socketmap_request("recipients ");
    REQUIRE(q);
    CHECK(q->key.empty());
    CHECK_FALSE(split_socketmap_request("virtual"));
    CHECK_FALSE(split_socketmap_request(" key"));
    CHECK(parse_table_name("virtual") == SocketmapTable::virtual_alias);
    CHECK(parse_table_name("recipients") == SocketmapTable::recipients);
    CHECK_FALSE(parse_table_name("Virtual"));
    CHECK(parse_table_name("transport") == SocketmapTable::transport);
    CHECK_FALSE(parse_table_name("transports"));
}

TEST_CASE("the transport table answers the next hop of transport-mode users only (design 11)") {
    const RoutingDecision transport{Action::transport, "smtp:[contoso-com.mail.protection.outlook.com]", {}};
    CHECK(socketmap_reply(SocketmapTable::transport, "ann@contoso.com", transport) ==
          "OK smtp:[contoso-com.mail.protection.outlook.com]");
    // The other tables leave the recipient alone: no rewrite, accepted as a known user.
    CHECK(socketmap_reply(SocketmapTable::virtual_alias, "ann@contoso.com", transport) == "NOTFOUND ");
    CHECK(socketmap_reply(SocketmapTable::recipients, "ann@contoso.com", transport) == "OK transport");
    CHECK(policy_action(transport) == kPolicyNoDecision);
    for (const Action a : {Action::foreign, Action::relay, Action::rewrite, Action::dual, Action::reject}) {
        CAPTURE(to_string(a));
        CHECK(socketmap_reply(SocketmapTable::transport, "x@contoso.com", {a, "x@o365.contoso.com", {}}) == "NOTFOUND ");
    }
    CHECK(socketmap_reply(SocketmapTable::transport, "x@contoso.com", {Action::tempfail, {}, "map unavailable"}) ==
          "TEMP map unavailable");
}

