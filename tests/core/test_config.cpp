#include <catch2/catch.hpp>

#include "coexist/config.hpp"
#include "fixture.hpp"

using namespace coexist;

TEST_CASE("the design's sample configuration loads") {
    const char* text = R"([map]
path = /var/lib/coexist

[routing]
recipient_delimiter = +
keep_extension = yes
unknown_recipient = relay        ; relay | reject  (a domain section may override)
loop_limit = 3

[domain contoso.com]
routing_domain = o365.contoso.com
aliases = contoso.net

[milter]
socket = unix:/run/coexist/milter.sock
user = coexist                   ; started as root: switch to this user before serving
socket_group = postfix           ; unix sockets: group and mode so Postfix can connect
socket_mode = 0660

[policyd]
policy_socket = unix:/run/coexist/policy.sock
socketmap_socket = unix:/run/coexist/socketmap.sock
user = coexist
socket_group = postfix
socket_mode = 0660
)";
    const Config c = parse_config(text, "coexist.ini");
    CHECK(c.map_path == "/var/lib/coexist");
    CHECK(c.recipient_delimiter == "+");
    CHECK(c.keep_extension);
    CHECK(c.unknown_recipient == UnknownRecipient::relay);
    CHECK(c.loop_limit == 3);
    REQUIRE(c.domains.size() == 1);
    CHECK(c.domains[0].name == "contoso.com");
    CHECK(c.domains[0].routing_domain == "o365.contoso.com");
    CHECK(c.domains[0].aliases == std::vector<std::string>{"contoso.net"});
    CHECK(c.milter.socket.spec == "unix:/run/coexist/milter.sock");
    CHECK(c.milter.socket.group == "postfix");
    CHECK(c.milter.socket.mode == 0660);
    CHECK(c.policyd.socketmap_socket.group == "postfix");
    CHECK(c.find_domain("contoso.net") == &c.domains[0]);
    CHECK(c.find_domain("o365.contoso.com") == nullptr);
}

TEST_CASE("per-domain unknown_recipient overrides [routing]") {
    const Config c = test::standard_config("/tmp/x");
    CHECK(c.unknown_policy(*c.find_domain("contoso.com")) == UnknownRecipient::relay);
    CHECK(c.unknown_policy(*c.find_domain("fabrikam.com")) == UnknownRecipient::reject);
}

namespace {

// Parses `text` expecting a ConfigError at `line` naming `key`.
void expect_error(const std::string& text, int line, const std::string& key, const std::string& fragment) {
    CAPTURE(text);
    try {
        parse_config(text, "bad.ini");
        FAIL("no error");
    } catch (const ConfigError& e) {
        CAPTURE(e.what());
        CHECK(e.file() == "bad.ini");
        CHECK(e.line() == line);
        CHECK(e.key() == key);
        CHECK(std::string(e.what()).find(fragment) != std::string::npos);
        CHECK(std::string(e.what()).rfind("bad.ini:", 0) == 0);
    }
}

const std::string kDomain = "[domain contoso.com]\nrouting_domain = o365.contoso.com\n";

}  // namespace

TEST_CASE("config errors name file, line and key") {
    // An unknown section is reported on its header's line, keys or not.
    expect_error(kDomain + "[mapp]\npath = /x\n", 3, "", "unknown section [mapp]");
    expect_error(kDomain + "[domain ]\nrouting_domain = o365.contoso.com\n", 3, "", "unknown section [domain ]");
    expect_error(kDomain + "[map]\npaht = /x\n", 4, "paht", "unknown key");
    expect_error(kDomain + "[routing]\nloop_limit = 0\n", 4, "loop_limit", "whole number");
    expect_error(kDomain + "[routing]\nloop_limit = 3x\n", 4, "loop_limit", "whole number");
    expect_error(kDomain + "[routing]\nkeep_extension = maybe\n", 4, "keep_extension", "yes or no");
    expect_error(kDomain + "[routing]\nunknown_recipient = bounce\n", 4, "unknown_recipient", "relay, reject or new_system");
    expect_error(kDomain + "[routing]\nrecipient_delimiter = @\n", 4, "recipient_delimiter", "printable");
    expect_error(kDomain + "[map]\npath = relative\n", 4, "path", "absolute");
    expect_error(kDomain + "[map]\nmap_size = 10K\n", 4, "map_size", "at least 1M");
    expect_error(kDomain + "[milter]\nsocket = tcp:25\n", 4, "socket", "unix:/path");
    expect_error(kDomain + "[milter]\nsocket = inet:8891@localhost\n", 4, "socket", "numeric");
    expect_error(kDomain + "[milter]\nsocket_mode = 0999\n", 4, "socket_mode", "octal");
    expect_error(kDomain + "[milter]\nuser = ro ot\n", 4, "user", "not a user");
    expect_error(kDomain + "[policyd]\nmax_connections = 0\n", 4, "max_connections", "whole number");
    expect_error(kDomain + "routing_domain = again.example\n", 3, "routing_domain", "given twice");
    expect_error(kDomain + "[map]\nmax_size = 64M\nmap_size = 2G\n", 5, "map_size",
                 "given twice in [map] (map_size is max_size's old name)");
    expect_error(kDomain + "aliases = not_a domain!\n", 3, "aliases", "not a domain");
    expect_error(kDomain + "aliases = b\xc3\xbc" "cher.example\n", 3, "aliases", "as its A-label, xn--");
    // Host names (RFC 1123): a routing domain or alias no other system can reach is a typo.
    expect_error("[domain contoso.com]\nrouting_domain = localhost\n", 2, "routing_domain",
                 "not a domain name: 'localhost': a single label");
    expect_error(kDomain + "aliases = -contoso.net\n", 3, "aliases", "the label '-contoso' begins or ends with a hyphen");
    expect_error("[domain contoso.com]\nrouting_domain = o365-.contoso.com\n", 2, "routing_domain", "hyphen");
    expect_error("[domain contoso.com]\nrouting_domain = " + std::string(64, 'a') + ".com\n", 2, "routing_domain",
                 "longer than 63 characters");
    expect_error("[domain contoso.com]\nrouting_domain = o365.123\n", 2, "routing_domain",
                 "the last label '123' is all digits");
    expect_error("[domain contoso.com]\nrouting_domain = xn--zz.com\n", 2, "routing_domain",
                 "A-label (xn--...) that is no valid internationalized name");
    CHECK_NOTHROW(parse_config("[domain contoso.com]\nrouting_domain = xn--mller-kva.de\n", "ok.ini"));
    expect_error(kDomain + "mode = transport\nnew_system_nexthop = smtp:[999.1.1.1]\n", 4, "new_system_nexthop",
                 "next hop is not host");
    expect_error("[domain contoso.com]\nrouting_domain = o365_x.contoso.com\n", 2, "routing_domain",
                 "it holds '_' (letters, digits, hyphens and dots only)");
    // A value's control bytes are not copied into the message.
    expect_error("[domain contoso.com]\nrouting_domain = o365\x1b[31m.contoso.com\n", 2, "routing_domain",
                 "'o365?[31m.contoso.com'");
    // A next hop's host may be a local name (smtp:[newsys]).
    CHECK_NOTHROW(parse_config(kDomain + "mode = transport\nnew_system_nexthop = smtp:[newsys]:2525\n", "ok.ini"));
}

TEST_CASE("a line longer than the INI reader's buffer is refused, never read in pieces") {
    // Walk-through: a 199-byte comment followed by "unknown_recipient = reject" set that key:
    // inih handed the line over in pieces and read the last one as a line of its own.
    const std::string comment = "# " + std::string(197 - std::string("unknown_recipient = reject").size(), 'x') +
                                "unknown_recipient = reject\n";
    REQUIRE(comment.size() == 200);
    expect_error(kDomain + comment, 3, "", "line longer than 198 bytes, the most coexist.ini's reader (inih) takes");
    expect_error(kDomain + "# " + std::string(400, 'y') + "\n", 3, "", "line longer than");
    // The longest line the reader holds is read whole.
    const Config c = parse_config(kDomain + "# " + std::string(196, 'z') + "\n", "ok.ini");
    CHECK_FALSE(c.domains.front().unknown_recipient);
}

TEST_CASE("two listeners on one socket are a configuration error, at the later key") {
    expect_error(kDomain + "[policyd]\npolicy_socket = inet:10031@127.0.0.1\nsocketmap_socket = inet:10031@127.0.0.1\n", 5,
                 "socketmap_socket", "[policyd] policy_socket = inet:10031@127.0.0.1 and [policyd] socketmap_socket = "
                                     "inet:10031@127.0.0.1 are the same socket");
    expect_error(kDomain + "[milter]\nsocket = unix:/run/coexist/policy.sock\n", 4, "socket", "are the same socket");
    expect_error(kDomain + "[policyd]\nsocketmap_socket = inet:8891@0.0.0.0\n[milter]\nsocket = inet:8891@127.0.0.1\n",
                 6, "socket", "are the same socket");
    // Other ports, other addresses of one family, or two families are separate sockets.
    CHECK_NOTHROW(parse_config(kDomain + "[milter]\nsocket = inet:8891@127.0.0.1\n[policyd]\n"
                                         "policy_socket = inet:8891@127.0.0.2\nsocketmap_socket = inet6:8891@::1\n",
                               "ok.ini"));
}

TEST_CASE("a directory given as the configuration file says so") {
    test::TempDir dir;
    try {
        load_config(dir.path());
        FAIL("no error");
    } catch (const ConfigError& e) {
        CHECK_THAT(e.what(), Catch::Contains("is a directory, not a configuration file"));
    }
}

TEST_CASE("a section without keys is checked too") {
    // inih reports only keys: an empty misspelt section would otherwise pass unnoticed.
    expect_error(kDomain + "[milterr]\n", 3, "", "unknown section [milterr]");
    expect_error(kDomain + "[milterr]\n; only a comment\n[map]\n", 3, "", "unknown section [milterr]");
    expect_error(kDomain + "[ milter ]\n", 3, "", "unknown section [ milter ]");
    expect_error(kDomain + "[domain not a domain!]\n", 3, "", "unknown section [domain not a domain!]");
    expect_error(kDomain + "[domain b\xc3\xbc" "cher.example]\nrouting_domain = o365.example\n", 3, "",
                 "an internationalized one as its A-label (xn--...)");
    // A [domain] left without its keys manages nothing: its routing_domain is missing.
    expect_error(kDomain + "[domain contoso.net]\n", 3, "routing_domain", "missing in [domain contoso.net]");
    // An empty repeat of a domain is a repeat, before or after the section with the keys.
    expect_error(kDomain + "[domain Contoso.COM]\n", 3, "", "[domain Contoso.COM] repeats [domain contoso.com] of line 1");
    expect_error("[domain contoso.com]\n" + kDomain, 1, "", "[domain contoso.com] repeats [domain contoso.com] of line 2");
    // Other sections given twice (walk-through: two [routing] or [milter] passed when no key
    // repeated), with keys in both, or an empty repeat before or after.
    expect_error(kDomain + "[routing]\nloop_limit = 3\n[milter]\nuser = nobody\n[routing]\nshadow = no\n", 7, "",
                 "[routing] repeats [routing] of line 3");
    expect_error(kDomain + "[milter]\nuser = nobody\n[milter]\n", 5, "", "[milter] repeats [milter] of line 3");
    expect_error(kDomain + "[milter]\n[milter]\nuser = nobody\n", 4, "", "[milter] repeats [milter] of line 3");
    expect_error(kDomain + "[map]\n[map]\n", 4, "", "[map] repeats [map] of line 3");
    // [directory] has no default source: empty, it is an error that names what it needs.
    expect_error(kDomain + "[directory]\n", 3, "uri", "missing in [directory] (an empty section");
    // Other empty sections with fixed names take every default.
    const Config c = parse_config(kDomain + "[milter]\n[policyd]\n[map]\n[routing]\n", "ok.ini");
    CHECK(c.domains.size() == 1);
    CHECK(c.milter.socket.spec == parse_config(kDomain, "ok.ini").milter.socket.spec);
}

TEST_CASE("metrics_listen and shadow: defaults, accepted values, errors") {
    const Config d = parse_config(kDomain, "coexist.ini");
    CHECK(d.milter.metrics_listen.empty());  // off by default
    CHECK(d.policyd.metrics_listen.empty());
    CHECK(d.directory.metrics_listen.empty());
    CHECK_FALSE(d.shadow);

    const Config c = parse_config(kDomain + "[routing]\nshadow = yes\n[milter]\nmetrics_listen = 127.0.0.1:9187\n"
                                            "[policyd]\nmetrics_listen = [::1]:9188\n",
                                  "coexist.ini");
    CHECK(c.shadow);
    CHECK(c.milter.metrics_listen == "127.0.0.1:9187");
    CHECK(c.policyd.metrics_listen == "[::1]:9188");
    CHECK(parse_config(kDomain + "[milter]\nmetrics_listen =\n", "coexist.ini").milter.metrics_listen.empty());

    for (const char* bad : {"9187", "localhost:9187", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
                            "127.0.0.1:91x", "::1:9187", "[::1]", "[127.0.0.1]:9187", "0x7f.1:9187"}) {
        INFO(bad);
        expect_error(kDomain + "[milter]\nmetrics_listen = " + bad + "\n", 4, "metrics_listen", "HOST:PORT");
        expect_error(kDomain + "[policyd]\nmetrics_listen = " + bad + "\n", 4, "metrics_listen", "HOST:PORT");
    }
    expect_error(kDomain + "[routing]\nshadow = perhaps\n", 4, "shadow", "yes or no");
}

TEST_CASE("config consistency errors") {
    expect_error("[routing]\nloop_limit = 3\n", 2, "", "no [domain NAME] section");
    expect_error("[domain contoso.com]\naliases = contoso.net\n", 2, "routing_domain", "missing");
    expect_error("[domain contoso.com]\nrouting_domain = contoso.com\n", 2, "routing_domain", "loop");
    expect_error("[domain contoso.com]\nrouting_domain = o365.contoso.com\n[domain fabrikam.com]\n"
                 "routing_domain = x.fabrikam.com\naliases = contoso.com\n",
                 5, "aliases", "already managed");
}

TEST_CASE("a syntax error names its line") {
    try {
        parse_config(kDomain + "[map\n", "bad.ini");
        FAIL("no error");
    } catch (const ConfigError& e) {
        CHECK(e.line() == 3);
    }
}

TEST_CASE("load_config reports a missing file") {
    CHECK_THROWS_WITH(load_config("/nonexistent/coexist.ini"), Catch::Contains("/nonexistent/coexist.ini"));
}

// Before, [domain Contoso.COM] after [domain contoso.com] silently replaced the first
// section's keys (domain names are case-insensitive, the sections were told apart by case).
TEST_CASE("a domain given twice is an error naming the first definition") {
    const std::string first = "[domain contoso.com]\nrouting_domain = o365.contoso.com\n\n";
    expect_error(first + "[domain Contoso.COM]\nrouting_domain = elsewhere.example\n", 4, "",
                 "[domain Contoso.COM] repeats [domain contoso.com] of line 1");
    expect_error(first + "[domain contoso.com.]\nunknown_recipient = reject\n", 4, "", "of line 1");
    expect_error(first + "[routing]\nloop_limit = 3\n[domain contoso.com]\naliases = contoso.net\n", 6, "",
                 "repeats [domain contoso.com] of line 1");
    // An alias that is another managed domain (or its alias), whatever the case.
    expect_error(first + "[domain fabrikam.com]\nrouting_domain = x.fabrikam.com\naliases = CONTOSO.com\n", 6,
                 "aliases", "already managed by [domain contoso.com]");
    expect_error("[domain contoso.com]\nrouting_domain = o365.contoso.com\naliases = Contoso.NET\n"
                 "[domain fabrikam.com]\nrouting_domain = x.fabrikam.com\naliases = contoso.net\n",
                 3, "aliases", "already managed by [domain fabrikam.com]");
}

TEST_CASE("[directory]: keys, defaults and errors") {
    const std::string dir = "[directory]\nuri = ldaps://dc1.contoso.com ldaps://dc2.contoso.com\nbase = ou=people,dc=contoso,dc=com\n";
    const Config c = parse_config(kDomain + dir + "alias_attributes = proxyAddresses, mailAlternateAddress\n"
                                              "max_removals = 25\n", "ok.ini");
    CHECK(c.directory.configured());
    CHECK(c.directory.alias_attributes == std::vector<std::string>{"proxyaddresses", "mailalternateaddress"});
    CHECK(c.directory.address_attribute == "mail");
    CHECK(c.directory.filter == "(objectClass=inetOrgPerson)");
    CHECK(c.directory.removal_limit(1000) == 25);  // an absolute number
    CHECK_FALSE(parse_config(kDomain, "none.ini").directory.configured());
    const Config pct = parse_config(kDomain + dir + "max_removals = 10%\n", "pct.ini");
    CHECK(pct.directory.removal_limit(1000) == 100);
    CHECK(pct.directory.removal_limit(5) == 1);  // a percentage allows at least one
    CHECK(parse_config(kDomain + dir + "max_removals = 0%\n", "z.ini").directory.removal_limit(1000) == 0);

    expect_error(kDomain + "[directory]\nuri = http://dc1\n", 4, "uri", "ldap://, ldaps:// or ldapi://");
    expect_error(kDomain + dir + "max_removals = 150%\n", 6, "max_removals", "'150%'");
    expect_error(kDomain + dir + "filter = objectClass=person\n", 6, "filter", "in parentheses");
    expect_error(kDomain + dir + "address_attribute = mail address\n", 6, "address_attribute", "attribute name");
    expect_error(kDomain + dir + "interval = 1\n", 6, "interval", "whole number from 5");
    expect_error(kDomain + dir + "bind_password_file = secret\n", 6, "bind_password_file", "absolute path");
    expect_error(kDomain + dir + "bind_dn = cn=x\n", 6, "bind_password_file", "missing in [directory]");
    expect_error(kDomain + dir + "tls_cert_file = /c.pem\n", 6, "tls_key_file", "go together");
    expect_error(kDomain + dir + "state_attribute = employeeType\nmigrated_group = cn=m\n", 7, "state_attribute",
                 "not both");
    expect_error(kDomain + "[directory]\nuri = ldap://x\n", 4, "base", "missing in [directory]");
}
