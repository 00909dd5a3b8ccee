// LdapSession and its helpers (maps/directory/ldap_session.cpp).
//
// Tests tagged [slapd] need a real server: tests/directory/test_ldap_session.py starts a private
// slapd (tests/harness, TLS with a throw-away CA, 2,500 generated users) and runs this program
// with "[slapd]" and the server's coordinates in COEXIST_TEST_LDAP_* variables. The others are
// unit tests (ctest runs them with "~[slapd]").
#include <catch2/catch.hpp>

#include <ldap.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include <fmt/format.h>

#include "coexist/system_error.hpp"
#include "ldap_session.hpp"
#include "sync_controls.hpp"

using namespace coexist;
using namespace coexist::directory;

namespace {

std::string env(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') FAIL("environment variable " << name << " is not set (run through test_ldap_session.py)");
    return v;
}

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        char tmpl[] = "/tmp/coexist-ldap-session-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string file(const std::string& name, const std::string& content, mode_t mode) const {
        auto p = path / name;
        std::ofstream(p) << content;
        REQUIRE(::chmod(p.c_str(), mode) == 0);
        return p.string();
    }
};

// The service account's configuration against the test slapd; password file written in `dir`.
DirectoryConfig service_config(const TempDir& dir, const std::string& uri) {
    DirectoryConfig c;
    c.uri = uri;
    c.bind_dn = env("COEXIST_TEST_LDAP_BIND_DN");
    c.bind_password_file = dir.file("ldap.secret", env("COEXIST_TEST_LDAP_PASSWORD") + "\n", 0600);
    c.base = "ou=people,dc=contoso,dc=com";
    c.timeout_seconds = 10;
    return c;
}

DirectoryConfig anonymous_config(const std::string& uri) {
    DirectoryConfig c;
    c.uri = uri;
    c.base = "ou=people,dc=contoso,dc=com";
    c.timeout_seconds = 10;
    return c;
}

// A DirectoryError from `f`, or a test failure when there is none.
template <typename F>
DirectoryError error_of(F&& f) {
    try {
        f();
    } catch (const DirectoryError& e) {
        return e;
    }
    FAIL("no DirectoryError thrown");
    throw std::logic_error("unreachable");
}

std::size_t count_people(LdapSession& s, const std::string& filter = "(objectClass=inetOrgPerson)") {
    std::size_t n = 0;
    s.search_paged("ou=people,dc=contoso,dc=com", LDAP_SCOPE_SUBTREE, filter, {"1.1"}, [&](Entry&&) { ++n; });
    return n;
}

}  // namespace

// ---- unit: no server ------------------------------------------------------------------------

TEST_CASE("normalize_dn compares DNs as the directory does", "[unit]") {
    const std::string canonical = normalize_dn("uid=ann,ou=people,dc=contoso,dc=com");
    CHECK(canonical == "uid=ann,ou=people,dc=contoso,dc=com");
    auto same = GENERATE(as<std::string>{},
                         "UID=Ann,OU=People,DC=Contoso,DC=COM",              // case of types and values
                         "uid=ann, ou=people, dc=contoso, dc=com",           // spaces after commas
                         "uid=ann,  ou=People,dc=contoso,  DC=com",
                         "uid=ann;ou=people;dc=contoso;dc=com");             // LDAPv2 separators
    INFO(same);
    CHECK(normalize_dn(same) == canonical);
    CHECK(normalize_dn("uid=bob,ou=people,dc=contoso,dc=com") != canonical);
    CHECK(normalize_dn("cn=Smith\\, John,ou=people,dc=contoso,dc=com") ==
          normalize_dn("CN=smith\\, john, ou=people,dc=contoso,dc=com"));
    // Not a DN libldap can parse: lowercased as it is, still comparable with itself.
    CHECK(normalize_dn("Not A DN") == "not a dn");
    // Plain DNs take a fast path (lowercasing only): it must agree with libldap's normalization,
    // which the same DNs written with spaces after the commas go through.
    for (const char* plain : {"UID=User.1-x_y@z,OU=People,DC=Contoso,DC=Com", "cn=migrated,ou=groups,dc=contoso,dc=com",
                              "uid=user0000001,ou=people,dc=contoso,dc=com", "CN=A-1,O=x"}) {
        std::string spaced;  // appended, not insert(): GCC 12 at -O3 reports a false -Wrestrict for insert
        for (const char* c = plain; *c; ++c) {
            spaced.push_back(*c);
            if (*c == ',') spaced.push_back(' ');
        }
        CHECK(normalize_dn(plain) == normalize_dn(spaced));
    }
}

TEST_CASE("normalize_dn compares values beyond ASCII as caseIgnoreMatch does", "[unit]") {
    // Walk-through: slapd found uid=JÖRG and "cn=Jörg  Müller" (two spaces) in the migrated
    // group for the entries uid=jörg and "cn=Jörg Müller"; coexist-map, lowercasing ASCII only,
    // did not, and routed both users to the old system.
    const std::string joerg = normalize_dn("uid=j\xc3\xb6rg,ou=people,dc=contoso,dc=com");
    auto same = GENERATE(as<std::string>{},
                         "uid=J\xc3\x96RG,ou=people,dc=contoso,dc=com",   // JÖRG
                         "UID=J\xc3\x96rg, OU=People,DC=Contoso,DC=com",
                         "uid=jo\xcc\x88rg,ou=people,dc=contoso,dc=com",  // o + combining diaeresis (NFD)
                         "uid=j\\C3\\B6rg,ou=people,dc=contoso,dc=com",   // hex-escaped UTF-8
                         "uid=\\ j\xc3\xb6rg\\ ,ou=people,dc=contoso,dc=com");  // escaped leading and trailing spaces
    INFO(same);
    CHECK(normalize_dn(same) == joerg);
    CHECK(normalize_dn("cn=J\xc3\xb6rg  M\xc3\xbcller,ou=people,dc=contoso,dc=com") ==
          normalize_dn("cn=j\xc3\xb6rg m\xc3\xbcller,ou=people,dc=contoso,dc=com"));
    CHECK(normalize_dn("cn=John   Smith,ou=people,dc=contoso,dc=com") ==
          normalize_dn("CN=john smith,ou=people,dc=contoso,dc=com"));
    // As slapd, not as full case folding: ß is not ss, a final ς is not σ, İ is i (walk-through:
    // slapd's ldapcompare said FALSE for the first two and TRUE for the third).
    CHECK(normalize_dn("uid=WEISS,ou=people,dc=contoso,dc=com") !=
          normalize_dn("uid=wei\xc3\x9f,ou=people,dc=contoso,dc=com"));
    CHECK(normalize_dn("uid=\xce\xa3\xce\x8a\xce\xa3\xce\xa5\xce\xa6\xce\x9f\xce\xa3,ou=people,dc=contoso,dc=com") !=  // ΣΊΣΥΦΟΣ
          normalize_dn("uid=\xcf\x83\xce\xaf\xcf\x83\xcf\x85\xcf\x86\xce\xbf\xcf\x82,ou=people,dc=contoso,dc=com"));  // σίσυφος
    CHECK(normalize_dn("uid=\xc4\xb0stanbul,ou=people,dc=contoso,dc=com") ==  // İstanbul
          normalize_dn("uid=istanbul,ou=people,dc=contoso,dc=com"));
    // Compatibility forms compose as in slapd: the fi ligature, full-width letters, NBSP.
    CHECK(normalize_dn("cn=\xef\xac\x81le,ou=people,dc=contoso,dc=com") == normalize_dn("cn=file,ou=people,dc=contoso,dc=com"));
    CHECK(normalize_dn("cn=\xef\xbc\xa1nn,ou=people,dc=contoso,dc=com") == normalize_dn("cn=ann,ou=people,dc=contoso,dc=com"));
    CHECK(normalize_dn("cn=ann\xc2\xa0lee,ou=people,dc=contoso,dc=com") == normalize_dn("cn=ann lee,ou=people,dc=contoso,dc=com"));
    // Different people stay different.
    CHECK(normalize_dn("uid=jorg,ou=people,dc=contoso,dc=com") != joerg);
    CHECK(normalize_dn("cn=John Smith,ou=people,dc=contoso,dc=com") !=
          normalize_dn("cn=JohnSmith,ou=people,dc=contoso,dc=com"));
    // A DN with a comma in a value keeps it escaped: not another RDN.
    CHECK(normalize_dn("cn=M\xc3\xbcller\\, J\xc3\xb6rg,ou=people,dc=contoso,dc=com") ==
          normalize_dn("cn=m\xc3\xbcller\\, j\xc3\xb6rg,ou=people,dc=contoso,dc=com"));
    CHECK(normalize_dn("cn=M\xc3\xbcller\\, J\xc3\xb6rg,ou=people,dc=contoso,dc=com") !=
          normalize_dn("cn=M\xc3\xbcller,cn=J\xc3\xb6rg,ou=people,dc=contoso,dc=com"));
}

TEST_CASE("read_bind_password takes the first line of a private file", "[unit]") {
    TempDir dir;
    SECTION("0600 and 0640 are accepted; the line ending is not part of the password") {
        CHECK(read_bind_password(dir.file("a", "s3cret\n", 0600)) == "s3cret");
        CHECK(read_bind_password(dir.file("b", "s3cret\r\nsecond line\n", 0640)) == "s3cret");
        CHECK(read_bind_password(dir.file("c", "no newline at all", 0400)) == "no newline at all");
        CHECK(read_bind_password(dir.file("d", " spaces kept \n", 0600)) == " spaces kept ");
    }
    SECTION("readable by others, writable by the group or others: refused, permanently") {
        auto mode = GENERATE(0644, 0604, 0602, 0660, 0620, 0666);
        INFO("mode " << std::oct << mode);
        auto path = dir.file("p", "s3cret\n", static_cast<mode_t>(mode));
        auto e = error_of([&] { read_bind_password(path); });
        CHECK_FALSE(e.transient());
        CHECK_THAT(e.what(), Catch::Contains(path) && Catch::Contains("chmod 0600 or 0640"));
    }
    SECTION("an empty password is refused: libldap would bind anonymously") {
        auto e = error_of([&] { read_bind_password(dir.file("e", "\nsecond\n", 0600)); });
        CHECK_THAT(e.what(), Catch::Contains("empty"));
        CHECK_FALSE(error_of([&] { read_bind_password(dir.file("f", "", 0600)); }).transient());
    }
    SECTION("not a regular file, missing, or owned by someone else") {
        std::filesystem::create_directory(dir.path / "sub");
        ::chmod((dir.path / "sub").c_str(), 0700);
        CHECK_THAT(error_of([&] { read_bind_password((dir.path / "sub").string()); }).what(),
                   Catch::Contains("not a regular file"));
        CHECK_THAT(error_of([&] { read_bind_password((dir.path / "missing").string()); }).what(),
                   Catch::Contains("cannot open"));
        if (::geteuid() == 0) {
            auto path = dir.file("owned", "s3cret\n", 0600);
            REQUIRE(::chown(path.c_str(), 65534, 65534) == 0);  // nobody, as the follower's user would own it
            // root may read the follower's file (a one-shot `coexist-map sync` by the admin):
            // the mode is what keeps the secret from others.
            CHECK(read_bind_password(path) == "s3cret");
        }
    }
}

TEST_CASE("is_transient: worth a retry only when the server may come back", "[unit]") {
    for (int code : {LDAP_SERVER_DOWN, LDAP_CONNECT_ERROR, LDAP_TIMEOUT, LDAP_BUSY, LDAP_UNAVAILABLE,
                     LDAP_TIMELIMIT_EXCEEDED})
        CHECK(is_transient(code));
    for (int code : {LDAP_SUCCESS, LDAP_INVALID_CREDENTIALS, LDAP_NO_SUCH_OBJECT, LDAP_FILTER_ERROR,
                     LDAP_INSUFFICIENT_ACCESS, LDAP_SIZELIMIT_EXCEEDED, LDAP_OTHER, LDAP_PROTOCOL_ERROR})
        CHECK_FALSE(is_transient(code));
    CHECK(ldap_error_text(LDAP_NO_SUCH_OBJECT, "base gone") == "No such object (32): base gone");
    CHECK(ldap_error_text(LDAP_BUSY) == "Server is busy (51)");
}

TEST_CASE("a server that is down or silent is a transient error naming the URI", "[unit]") {
    SECTION("nothing listens") {
        // Port 1 (tcpmux) is unused on any machine this runs on: connection refused at once.
        auto e = error_of([] { LdapSession s(anonymous_config("ldap://127.0.0.1:1/")); });
        CHECK(e.transient());
        CHECK_THAT(e.what(), Catch::Contains("ldap://127.0.0.1:1/") && Catch::Contains("anonymous bind"));
        CHECK_THAT(e.what(), !Catch::Contains("TLS"));
    }
    SECTION("it accepts the connection and never answers: the operation timeout ends the wait") {
        coexist::FileDescriptor listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(listener);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(listener.get(), 4) == 0);  // the kernel completes the handshake; we never read
        socklen_t len = sizeof addr;
        REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        auto config = anonymous_config(fmt::format("ldap://127.0.0.1:{}/", ntohs(addr.sin_port)));
        config.timeout_seconds = 1;
        auto e = error_of([&] { LdapSession s(config); });
        CHECK(e.transient());
    }
    SECTION("a bind DN without a password file is a configuration error") {
        auto config = anonymous_config("ldap://127.0.0.1:1/");
        config.bind_dn = "cn=coexist,ou=services,dc=contoso,dc=com";
        CHECK_FALSE(error_of([&] { LdapSession s(config); }).transient());
    }
}

// ---- integration: a private slapd (test_ldap_session.py) ------------------------------------

TEST_CASE("anonymous and simple binds", "[slapd]") {
    const std::string uri = env("COEXIST_TEST_LDAP_URI");
    TempDir dir;
    SECTION("anonymous") {
        auto config = anonymous_config(uri);
        LdapSession s(config);
        CHECK(s.uri() == uri);
        CHECK(s.handle() != nullptr);
        CHECK(count_people(s, "(uid=user0000001)") == 1);
    }
    SECTION("the service account, with the password from its file") {
        auto config = service_config(dir, uri);
        LdapSession s(config);
        std::vector<Entry> found;
        s.search_paged(config.base, LDAP_SCOPE_SUBTREE, "(uid=user0000002)", {"mail", "mailLocalAddress", "cn"},
                       [&](Entry&& e) { found.push_back(std::move(e)); });
        REQUIRE(found.size() == 1);
        CHECK(normalize_dn(found[0].dn) == "uid=user0000002,ou=people,dc=contoso,dc=com");
        REQUIRE(found[0].values("mail") != nullptr);
        CHECK(*found[0].values("mail") == std::vector<std::string>{"user0000002@contoso.com"});
        REQUIRE(found[0].values("maillocaladdress") != nullptr);  // names lowercased
        CHECK(*found[0].values("maillocaladdress") == std::vector<std::string>{"alias2@contoso.com"});
        CHECK(found[0].values("mailLocalAddress") == nullptr);
        CHECK(found[0].values("sn") == nullptr);  // not asked for
    }
    SECTION("the first URI that answers") {
        auto config = anonymous_config(fmt::format("ldap://127.0.0.1:1/ {}", uri));
        LdapSession s(config);
        CHECK(s.uri() == uri);
    }
    SECTION("a wrong password is permanent and names the URI and the DN") {
        auto config = service_config(dir, uri);
        config.bind_password_file = dir.file("wrong.secret", "not-the-password\n", 0600);
        auto e = error_of([&] { LdapSession s(config); });
        CHECK_FALSE(e.transient());
        CHECK_THAT(e.what(), Catch::Contains(uri) && Catch::Contains("bind as cn=coexist") &&
                                 Catch::Contains("Invalid credentials"));
    }
    SECTION("a refused password file stops before any connection") {
        auto config = service_config(dir, uri);
        ::chmod(config.bind_password_file.c_str(), 0644);
        CHECK_THAT(error_of([&] { LdapSession s(config); }).what(), Catch::Contains("bind_password_file"));
    }
}

TEST_CASE("paged search returns every entry exactly once", "[slapd]") {
    auto config = anonymous_config(env("COEXIST_TEST_LDAP_URI"));
    config.page_size = 100;
    LdapSession s(config);
    // The server returns at most 500 entries to a search that does not page (a real server's
    // limit): without paging this search fails, so the count below proves we paged.
    LDAPMessage* raw = nullptr;
    char* no_attrs[] = {const_cast<char*>("1.1"), nullptr};
    int rc = ldap_search_ext_s(s.handle(), config.base.c_str(), LDAP_SCOPE_SUBTREE, "(objectClass=inetOrgPerson)",
                               no_attrs, 0, nullptr, nullptr, nullptr, LDAP_NO_LIMIT, &raw);
    ldap_msgfree(raw);
    REQUIRE(rc == LDAP_SIZELIMIT_EXCEEDED);

    std::set<std::string> dns;
    std::size_t visits = 0;
    s.search_paged(config.base, LDAP_SCOPE_SUBTREE, "(objectClass=inetOrgPerson)", {"mail"}, [&](Entry&& e) {
        ++visits;
        dns.insert(normalize_dn(e.dn));
        REQUIRE(e.values("mail") != nullptr);
    });
    CHECK(visits == 2500);
    CHECK(dns.size() == 2500);
    CHECK(dns.count("uid=user0002500,ou=people,dc=contoso,dc=com") == 1);

    SECTION("the session stays usable after a visitor throws mid-page") {
        CHECK_THROWS_AS(s.search_paged(config.base, LDAP_SCOPE_SUBTREE, "(objectClass=inetOrgPerson)", {"1.1"},
                                       [](Entry&&) { throw std::runtime_error("visitor gives up"); }),
                        std::runtime_error);
        CHECK(count_people(s) == 2500);
    }
}

TEST_CASE("search errors", "[slapd]") {
    auto config = anonymous_config(env("COEXIST_TEST_LDAP_URI"));
    LdapSession s(config);
    SECTION("a base that does not exist is permanent and named") {
        auto e = error_of([&] {
            s.search_paged("ou=nobody,dc=contoso,dc=com", LDAP_SCOPE_SUBTREE, "(objectClass=*)", {}, [](Entry&&) {});
        });
        CHECK_FALSE(e.transient());
        CHECK_THAT(e.what(), Catch::Contains("ou=nobody,dc=contoso,dc=com") && Catch::Contains("No such object"));
    }
    SECTION("a filter that does not parse is permanent") {
        auto e = error_of([&] { s.search_paged(config.base, LDAP_SCOPE_SUBTREE, "(uid=", {}, [](Entry&&) {}); });
        CHECK_FALSE(e.transient());
        CHECK_THAT(e.what(), Catch::Contains("(uid="));
    }
    SECTION("supported controls from the root DSE") {
        CHECK(s.supports_control(kSyncRequestOid));
        CHECK(s.supports_control(LDAP_CONTROL_PAGEDRESULTS));
        CHECK_FALSE(s.supports_control("1.2.3.4.5.6.7"));
    }
}

TEST_CASE("TLS: ldaps:// and StartTLS against the test CA", "[slapd]") {
    TempDir dir;
    const std::string ca = env("COEXIST_TEST_LDAP_CA");
    SECTION("ldaps:// with the CA, bound as the service account") {
        auto config = service_config(dir, env("COEXIST_TEST_LDAPS_URI"));
        config.tls_ca_file = ca;
        LdapSession s(config);
        CHECK(count_people(s, "(uid=user0000003)") == 1);
    }
    SECTION("StartTLS on ldap://") {
        auto config = service_config(dir, env("COEXIST_TEST_LDAP_URI"));
        config.tls_ca_file = ca;
        config.start_tls = true;
        LdapSession s(config);
        CHECK(count_people(s, "(uid=user0000003)") == 1);
    }
    SECTION("a client certificate (Google Secure LDAP style) is presented and accepted") {
        auto config = anonymous_config(env("COEXIST_TEST_LDAPS_URI"));
        config.tls_ca_file = ca;
        config.tls_cert_file = env("COEXIST_TEST_LDAP_CLIENT_CERT");
        config.tls_key_file = env("COEXIST_TEST_LDAP_CLIENT_KEY");
        LdapSession s(config);
        CHECK(count_people(s, "(uid=user0000003)") == 1);
    }
    SECTION("a server certificate from another CA is refused") {
        auto config = anonymous_config(env("COEXIST_TEST_LDAP_URI"));
        config.tls_ca_file = env("COEXIST_TEST_LDAP_OTHER_CA");
        config.start_tls = true;
        auto e = error_of([&] { LdapSession s(config); });
        CHECK_FALSE(e.transient());  // StartTLS: the connection stood, the certificate did not
        CHECK_THAT(e.what(), Catch::Contains("StartTLS"));
        config.uri = env("COEXIST_TEST_LDAPS_URI");
        config.start_tls = false;
        // ldaps://: libldap says "server down" for a failed handshake; transient (a restarting
        // server looks the same), but the message points at TLS.
        auto ldaps = error_of([&] { LdapSession s(config); });
        CHECK_THAT(ldaps.what(), Catch::Contains("TLS handshake failed"));
    }
    SECTION("a CA file that does not exist is a configuration error naming it") {
        auto config = anonymous_config(env("COEXIST_TEST_LDAPS_URI"));
        config.tls_ca_file = (dir.path / "no-such-ca.crt").string();
        auto e = error_of([&] { LdapSession s(config); });
        CHECK_FALSE(e.transient());
        CHECK_THAT(e.what(), Catch::Contains("no-such-ca.crt") && !Catch::Contains("contact"));
    }
}
