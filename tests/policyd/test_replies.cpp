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
    const auto deferred = policy_action(decision(Action::tempfail, "", "map unavailable: /var/lib/coexist: EACCES"));
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

TEST_CASE("bare domains, '*' and partial keys are not addresses") {
    CHECK(is_address_key("ann@contoso.com"));
    CHECK(is_address_key("\"a@b\"@contoso.com"));
    CHECK_FALSE(is_address_key("contoso.com"));
    CHECK_FALSE(is_address_key("*"));
    CHECK_FALSE(is_address_key("@contoso.com"));
    CHECK_FALSE(is_address_key("ann@"));
    CHECK_FALSE(is_address_key(""));
    CHECK_FALSE(is_address_key("ann"));
}

// Before, any key with an '@' inside counted: route() then called an unparseable one "foreign"
// and the recipients table answered OK, even for a reject domain.
TEST_CASE("keys the address parser refuses are not addresses either") {
    CHECK_FALSE(is_address_key("ann@contoso.com>"));
    CHECK_FALSE(is_address_key("<ann@contoso.com"));
    CHECK_FALSE(is_address_key("ann\x01@contoso.com"));
    CHECK_FALSE(is_address_key("ann@conto so.com"));
    CHECK_FALSE(is_address_key("ann@contoso_com!"));
    CHECK_FALSE(is_address_key(std::string(2000, 'a') + "@contoso.com"));
}
