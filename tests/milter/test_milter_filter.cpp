// The milter's callbacks, driven directly through a libmilter stub (libmilter_stub.hpp): what
// each one asks Postfix to do for the rows of the decision table, and what happens when a
// callback fails inside (an exception must become 451 4.3.0, never a crash).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "coexist/log.hpp"
#include "coexist/map_reader.hpp"
#include "commands.hpp"
#include "filter.hpp"
#include "libmilter_stub.hpp"
#include "../core/fixture.hpp"

using namespace coexist;
using Ctx = smfi_str;

namespace {

// Log lines go to syslog and, with open_log(..., true), to fd 2: the test reads them there.
class CapturedLog {
public:
    CapturedLog() {
        std::fflush(stderr);
        saved_ = ::dup(2);
        std::FILE* f = std::fopen(dir_.file("log").c_str(), "w");
        ::dup2(::fileno(f), 2);
        std::fclose(f);
    }
    ~CapturedLog() {
        std::fflush(stderr);
        ::dup2(saved_, 2);
        ::close(saved_);
    }
    std::string text() const {
        std::ifstream in(dir_.file("log"));
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }

private:
    test::TempDir dir_;
    int saved_ = -1;
};

// The standard test domains (contoso.com relays unknown users, fabrikam.com rejects them)
// over a map with one user in each state, and the filter wired to it.
struct FilterFixture {
    test::TempDir dir;
    Config config;
    MapReader reader;
    milter::FilterEnvironment env;
    smfiDesc filter = milter::filter_description();

    explicit FilterFixture(bool with_map = true)
        : config(test::standard_config(dir.file("map"))), reader(config.map_path),
          env{&config, &reader, "relay.test"} {
        if (with_map) {
            std::ostringstream out;
            tool::init(config, out);
            tool::set(config, "ann@contoso.com", "migrated", std::nullopt, std::nullopt, out);
            tool::set(config, "bob@contoso.com", "source", std::nullopt, std::nullopt, out);
            tool::set(config, "dana@contoso.com", "dual", std::nullopt, std::nullopt, out);
            tool::set(config, "erin@fabrikam.com", "migrated", std::nullopt, std::nullopt, out);
        }
        open_log("test_milter_filter", true);
        milter::install_environment(&env);
    }
    ~FilterFixture() { milter::install_environment(nullptr); }

    sfsistat mail(Ctx& ctx) {
        char from[] = "<sender@fabrikam.example>";
        char* argv[] = {from, nullptr};
        return filter.xxfi_envfrom(&ctx, argv);
    }
    sfsistat rcpt(Ctx& ctx, std::string address, std::string param = "") {
        char* argv[] = {address.data(), param.empty() ? nullptr : param.data(), nullptr};
        return filter.xxfi_envrcpt(&ctx, argv);
    }
    sfsistat header(Ctx& ctx, std::string name, std::string value = "x") {
        return filter.xxfi_header(&ctx, name.data(), value.data());
    }
    sfsistat data(Ctx& ctx) { return filter.xxfi_data(&ctx); }
    // What Postfix 3.7 offers (milter_protocol = 6) and what libmilter fills in for coexist's
    // NULL callbacks; `socket` is the milter's own (the DATA reply depends on it).
    sfsistat negotiate(Ctx& ctx, const std::string& socket, unsigned long* steps_out = nullptr) {
        config.milter.socket.spec = socket;
        milter::install_environment(&env);
        const unsigned long offered_actions = SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT |
                                              SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_CHGFROM |
                                              SMFIF_ADDRCPT_PAR | SMFIF_SETSYMLIST;
        const unsigned long offered_steps = 0x1fffffUL;  // every SMFIP_NO*, SMFIP_NR_*, SKIP, ...
        unsigned long actions = offered_actions;  // libmilter's start values
        unsigned long steps = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOEOH | SMFIP_NOBODY | SMFIP_NOUNKNOWN;
        unsigned long f2 = 0, f3 = 0;
        const sfsistat r = filter.xxfi_negotiate(&ctx, offered_actions, offered_steps, 0, 0, &actions, &steps, &f2, &f3);
        CHECK(actions == (SMFIF_ADDHDRS | SMFIF_DELRCPT | SMFIF_ADDRCPT_PAR | SMFIF_SETSYMLIST));
        if (steps_out) *steps_out = steps;
        return r;
    }
    sfsistat eom(Ctx& ctx) {
        ctx.macros["i"] = "4QID1";
        return filter.xxfi_eom(&ctx);
    }
    void close(Ctx& ctx) { filter.xxfi_close(&ctx); }
};

bool has_trace_header(const Ctx& ctx) {
    for (const auto& [name, value] : ctx.headers)
        if (name == "X-Coexist-Trace" && value.find("relay.test") != std::string::npos) return true;
    return false;
}

}  // namespace

TEST_CASE("rewrite: the recipient is replaced by the routing address, ORCPT names the original") {
    FilterFixture f;
    Ctx ctx;
    REQUIRE(f.mail(ctx) == SMFIS_CONTINUE);
    REQUIRE(f.rcpt(ctx, "<Ann@contoso.com>") == SMFIS_CONTINUE);
    REQUIRE(f.eom(ctx) == SMFIS_CONTINUE);
    CHECK(ctx.deleted == std::vector<std::string>{"<Ann@contoso.com>"});
    REQUIRE(ctx.added.size() == 1);
    CHECK(ctx.added[0].first == "<ann@o365.contoso.com>");
    CHECK(ctx.added[0].second == "ORCPT=rfc822;Ann@contoso.com");
    CHECK(has_trace_header(ctx));
    CHECK_FALSE(ctx.reply);
    f.close(ctx);
    CHECK(ctx.priv == nullptr);
}

TEST_CASE("dual: the recipient is kept and the routing address added") {
    FilterFixture f;
    Ctx ctx;
    f.mail(ctx);
    REQUIRE(f.rcpt(ctx, "<dana@contoso.com>", "NOTIFY=NEVER") == SMFIS_CONTINUE);
    REQUIRE(f.eom(ctx) == SMFIS_CONTINUE);
    CHECK(ctx.deleted.empty());
    REQUIRE(ctx.added.size() == 1);
    CHECK(ctx.added[0].first == "<dana@o365.contoso.com>");
    CHECK(ctx.added[0].second.find("NOTIFY=NEVER") != std::string::npos);
    CHECK(has_trace_header(ctx));
    f.close(ctx);
}

TEST_CASE("relay and foreign recipients are left alone; only managed mail gets the trace header") {
    FilterFixture f;
    Ctx ctx;
    f.mail(ctx);
    REQUIRE(f.rcpt(ctx, "<bob@contoso.com>") == SMFIS_CONTINUE);
    REQUIRE(f.eom(ctx) == SMFIS_CONTINUE);
    CHECK(ctx.deleted.empty());
    CHECK(ctx.added.empty());
    CHECK(has_trace_header(ctx));

    Ctx other;
    f.mail(other);
    REQUIRE(f.rcpt(other, "<someone@example.org>") == SMFIS_CONTINUE);
    REQUIRE(f.eom(other) == SMFIS_CONTINUE);
    CHECK(other.headers.empty());
    f.close(ctx);
    f.close(other);
}

TEST_CASE("a recipient written as no address of ours is routed as Postfix reads it ({rcpt_addr})") {
    // Postfix drops blanks and comments inside the brackets and resolves the percent hack before
    // it delivers: what it reads decides. The recipient deleted is still the one received.
    FilterFixture f;
    Ctx ctx;
    f.mail(ctx);
    ctx.macros["rcpt_addr"] = "ann@contoso.com";
    REQUIRE(f.rcpt(ctx, "<ann@contoso.com >") == SMFIS_CONTINUE);
    ctx.macros["rcpt_addr"] = "dana@contoso.com";
    REQUIRE(f.rcpt(ctx, "<dana%contoso.com@[192.0.2.25]>") == SMFIS_CONTINUE);
    ctx.macros["rcpt_addr"] = "nobody@fabrikam.com";
    CHECK(f.rcpt(ctx, "<nobody(x)@fabrikam.com>") == SMFIS_REJECT);
    REQUIRE(ctx.reply);
    CHECK(ctx.reply->text.find("Postfix reads it as <nobody@fabrikam.com>") != std::string::npos);
    // Written as an address of a managed domain, the argument decides (it keeps the extension's
    // case, which Postfix's lowercased reading loses).
    ctx.macros["rcpt_addr"] = "erin+news@fabrikam.com";
    REQUIRE(f.rcpt(ctx, "<Erin+News@fabrikam.com>") == SMFIS_CONTINUE);
    REQUIRE(f.eom(ctx) == SMFIS_CONTINUE);
    CHECK(ctx.deleted == std::vector<std::string>{"<ann@contoso.com >", "<Erin+News@fabrikam.com>"});
    std::vector<std::string> added;
    for (const auto& [address, params] : ctx.added) added.push_back(address);
    CHECK(added == std::vector<std::string>{"<ann@o365.contoso.com>", "<dana@o365.contoso.com>",
                                            "<erin+News@fabrikam.onmicrosoft.com>"});
    f.close(ctx);
    // Without the macro (an MTA that does not send it) the argument alone decides, as before.
    Ctx bare;
    f.mail(bare);
    REQUIRE(f.rcpt(bare, "<dana%contoso.com@[192.0.2.25]>") == SMFIS_CONTINUE);
    REQUIRE(f.eom(bare) == SMFIS_CONTINUE);
    CHECK(bare.added.empty());
    CHECK(bare.headers.empty());
    f.close(bare);
}

TEST_CASE("reject: an unknown user of an authoritative domain gets 550 5.1.1 at RCPT") {
    FilterFixture f;
    Ctx ctx;
    f.mail(ctx);
    CHECK(f.rcpt(ctx, "<nobody@fabrikam.com>") == SMFIS_REJECT);
    REQUIRE(ctx.reply);
    CHECK(ctx.reply->code == "550");
    CHECK(ctx.reply->extended == "5.1.1");
    f.close(ctx);
}

TEST_CASE("tempfail: a map that cannot be read defers the recipient with 451 4.3.0") {
    FilterFixture f(false);  // no map at all
    Ctx ctx;
    f.mail(ctx);
    CHECK(f.rcpt(ctx, "<ann@contoso.com>") == SMFIS_TEMPFAIL);
    REQUIRE(ctx.reply);
    CHECK(ctx.reply->code == "451");
    CHECK(ctx.reply->extended == "4.3.0");
    // A foreign recipient needs no map.
    Ctx foreign;
    f.mail(foreign);
    CHECK(f.rcpt(foreign, "<someone@example.org>") == SMFIS_CONTINUE);
    f.close(ctx);
    f.close(foreign);
}

TEST_CASE("abort and a new MAIL forget the previous message of the session") {
    FilterFixture f;
    Ctx ctx;
    f.mail(ctx);
    f.rcpt(ctx, "<ann@contoso.com>");
    f.filter.xxfi_abort(&ctx);
    REQUIRE(f.eom(ctx) == SMFIS_CONTINUE);
    CHECK(ctx.added.empty());
    CHECK(ctx.headers.empty());

    f.mail(ctx);
    f.rcpt(ctx, "<dana@contoso.com>");
    f.mail(ctx);  // RSET, then a second message
    f.rcpt(ctx, "<bob@contoso.com>");
    REQUIRE(f.eom(ctx) == SMFIS_CONTINUE);
    CHECK(ctx.added.empty());
    f.close(ctx);
}

// Before the fix, guarded() logged e.what() after the exception object was destroyed: ASan
// reports a heap-use-after-free here (CI runs the unit tests under ASan/UBSan).
TEST_CASE("an exception inside a callback becomes 451 4.3.0, logged with its message") {
    FilterFixture f;
    SECTION("RCPT: per-session state cannot be stored") {
        CapturedLog log;
        Ctx ctx;
        ctx.fail_setpriv = true;
        CHECK(f.mail(ctx) == SMFIS_CONTINUE);  // MAIL keeps nothing: nothing to fail
        CHECK(f.rcpt(ctx, "<ann@contoso.com>") == SMFIS_TEMPFAIL);
        REQUIRE(ctx.reply);
        CHECK(ctx.reply->code == "451");
        CHECK(ctx.reply->extended == "4.3.0");
        CHECK_THAT(log.text(), Catch::Contains("RCPT: internal error, deferring: smfi_setpriv failed"));
    }
    SECTION("end of message: adding the routing address fails") {
        CapturedLog log;
        Ctx ctx;
        f.mail(ctx);
        f.rcpt(ctx, "<ann@contoso.com>");
        ctx.fail_addrcpt = true;
        CHECK(f.eom(ctx) == SMFIS_TEMPFAIL);
        REQUIRE(ctx.reply);
        CHECK(ctx.reply->code == "451");
        CHECK(ctx.reply->extended == "4.3.0");
        CHECK_THAT(log.text(),
                   Catch::Contains("4QID1: END-OF-MESSAGE: internal error, deferring: smfi_addrcpt_par "
                                   "<ann@o365.contoso.com> failed"));
        f.close(ctx);
    }
    SECTION("end of message: the trace header cannot be added") {
        CapturedLog log;
        Ctx ctx;
        f.mail(ctx);
        f.rcpt(ctx, "<bob@contoso.com>");
        ctx.fail_addheader = true;
        CHECK(f.eom(ctx) == SMFIS_TEMPFAIL);
        CHECK_THAT(log.text(), Catch::Contains("smfi_addheader failed"));
        f.close(ctx);
    }
}

// Issue 15, item 1: the milter gets RCPT TO as the client wrote it; it must decide as Postfix's
// own tables would (internal form), and still delete the recipient exactly as received.
TEST_CASE("issue 15.1: a quoted local part is the user it names, not an unknown one") {
    FilterFixture f;
    {
        std::ostringstream out;
        tool::set(f.config, "bob@fabrikam.com", "source", std::nullopt, std::nullopt, out);
        tool::set(f.config, "gapps1@contoso.com", "migrated", std::nullopt, std::nullopt, out);
    }
    Ctx ctx;
    f.mail(ctx);
    // bob exists in a reject domain: no 550 5.1.1.
    CHECK(f.rcpt(ctx, R"(<"bob"@fabrikam.com>)") == SMFIS_CONTINUE);
    CHECK_FALSE(ctx.reply);
    // gapps1 is migrated: rewritten, not left to go to the old system.
    REQUIRE(f.rcpt(ctx, R"(<"gapps1"@contoso.com>)") == SMFIS_CONTINUE);
    REQUIRE(f.rcpt(ctx, "<@relay.example:Ann@contoso.com>") == SMFIS_CONTINUE);
    REQUIRE(f.rcpt(ctx, "<@a.example,@b.example:\"Ann\"@Contoso.net>") == SMFIS_CONTINUE);
    REQUIRE(f.eom(ctx) == SMFIS_CONTINUE);
    // Deleted as received, less the source route: cleanup's tok822_parse() would read the
    // comma of a two-hop route as two addresses and delete neither (found by the property test).
    CHECK(ctx.deleted == std::vector<std::string>{R"(<"gapps1"@contoso.com>)", "<Ann@contoso.com>",
                                                  "<\"Ann\"@Contoso.net>"});
    REQUIRE(ctx.added.size() == 2);
    CHECK(ctx.added[0].first == "<gapps1@o365.contoso.com>");
    CHECK(ctx.added[1].first == "<ann@o365.contoso.com>");
    f.close(ctx);
}

TEST_CASE("shadow mode: every decision logged, nothing changed, nothing refused") {
    FilterFixture f;
    f.config.shadow = true;
    CapturedLog log;
    Ctx ctx;
    f.mail(ctx);
    REQUIRE(f.rcpt(ctx, "<ann@contoso.com>") == SMFIS_CONTINUE);
    REQUIRE(f.rcpt(ctx, "<dana@contoso.com>") == SMFIS_CONTINUE);
    REQUIRE(f.rcpt(ctx, "<nobody@fabrikam.com>") == SMFIS_CONTINUE);  // would be 550 5.1.1
    REQUIRE(f.eom(ctx) == SMFIS_CONTINUE);
    CHECK(ctx.deleted.empty());
    CHECK(ctx.added.empty());
    CHECK_FALSE(has_trace_header(ctx));
    CHECK_FALSE(ctx.reply);
    std::fflush(stderr);
    const std::string text = log.text();
    CHECK_THAT(text, Catch::Contains("4QID1: to=<ann@contoso.com>, action=rewrite, new=<ann@o365.contoso.com>, shadow=yes"));
    CHECK_THAT(text, Catch::Contains("4QID1: to=<dana@contoso.com>, action=dual, new=<dana@o365.contoso.com>, shadow=yes"));
    CHECK_THAT(text, Catch::Contains("4QID1: to=<nobody@fabrikam.com>, action=reject"));
    f.close(ctx);
}

TEST_CASE("shadow mode: an unreadable map defers nothing either") {
    FilterFixture f(false);
    f.config.shadow = true;
    CapturedLog log;
    Ctx ctx;
    f.mail(ctx);
    REQUIRE(f.rcpt(ctx, "<ann@contoso.com>") == SMFIS_CONTINUE);
    REQUIRE(f.eom(ctx) == SMFIS_CONTINUE);
    CHECK(ctx.deleted.empty());
    CHECK(ctx.added.empty());
    CHECK_FALSE(ctx.reply);
    std::fflush(stderr);
    CHECK_THAT(log.text(), Catch::Contains("to=<ann@contoso.com>, action=tempfail") &&
                               Catch::Contains("shadow=yes"));
    f.close(ctx);
}

TEST_CASE("shadow mode keeps the loop guard") {
    FilterFixture f;
    f.config.shadow = true;
    Ctx ctx;
    f.mail(ctx);
    REQUIRE(f.rcpt(ctx, "<ann@contoso.com>") == SMFIS_CONTINUE);
    char name[] = "X-Coexist-Trace";
    char value[] = "other.relay; id=1; Thu, 01 Jan 1970 00:00:00 +0000";
    for (unsigned i = 0; i < f.config.loop_limit; ++i) f.filter.xxfi_header(&ctx, name, value);
    CHECK(f.eom(ctx) == SMFIS_REJECT);
    REQUIRE(ctx.reply);
    f.close(ctx);
}

TEST_CASE("negotiated: MAIL, headers (and DATA over a unix socket) get no reply; RCPT and end of message do") {
    FilterFixture f;
    const auto [socket, data_reply] = GENERATE(table<std::string, sfsistat>({
        {"inet:8890@127.0.0.1", SMFIS_CONTINUE},   // answered: Postfix's Nagle (filter.cpp, on_data)
        {"inet6:8890@::1", SMFIS_CONTINUE},
        {"unix:/run/coexist/milter.sock", SMFIS_NOREPLY},
    }));
    Ctx ctx;
    unsigned long steps = 0;
    REQUIRE(f.negotiate(ctx, socket, &steps) == SMFIS_CONTINUE);
    CHECK((steps & SMFIP_NR_MAIL) != 0);
    CHECK((steps & SMFIP_NR_HDR) != 0);
    CHECK((steps & SMFIP_NR_RCPT) == 0);
    CHECK(((steps & SMFIP_NR_DATA) != 0) == (data_reply == SMFIS_NOREPLY));
    // Only the queue id, at every stage (an empty list would bring back Postfix's defaults), and
    // at RCPT Postfix's reading of the recipient.
    CHECK(ctx.symlists.size() == 7);
    for (const auto& [stage, names] : ctx.symlists) CHECK(names == (stage == SMFIM_ENVRCPT ? "i {rcpt_addr}" : "i"));

    for (int message = 0; message < 2; ++message) {  // the second one after a reset by MAIL
        CHECK(f.mail(ctx) == SMFIS_NOREPLY);
        CHECK(f.rcpt(ctx, "<nobody@fabrikam.com>") == SMFIS_REJECT);
        CHECK(f.rcpt(ctx, "<ann@contoso.com>") == SMFIS_CONTINUE);
        CHECK(f.data(ctx) == data_reply);
        CHECK(f.header(ctx, "Subject") == SMFIS_NOREPLY);
        CHECK(f.header(ctx, "X-Coexist-Trace") == SMFIS_NOREPLY);
        REQUIRE(f.eom(ctx) == SMFIS_CONTINUE);
        CHECK(ctx.deleted == std::vector<std::string>{"<ann@contoso.com>"});
        ctx.deleted.clear();
    }
    // The loop guard still counts the headers it got without replying.
    CHECK(f.mail(ctx) == SMFIS_NOREPLY);
    CHECK(f.rcpt(ctx, "<ann@contoso.com>") == SMFIS_CONTINUE);
    for (unsigned i = 0; i < f.config.loop_limit; ++i) CHECK(f.header(ctx, "X-Coexist-Trace") == SMFIS_NOREPLY);
    CHECK(f.eom(ctx) == SMFIS_REJECT);
    f.close(ctx);
    CHECK(ctx.priv == nullptr);
}

TEST_CASE("DATA lets go of a message with no managed recipient where it is answered; the next one is kept") {
    FilterFixture f;
    Ctx ctx;
    unsigned long steps = 0;
    REQUIRE(f.negotiate(ctx, "inet:8890@127.0.0.1", &steps) == SMFIS_CONTINUE);
    REQUIRE((steps & SMFIP_NR_DATA) == 0);
    // Only foreign recipients, and a managed one refused at RCPT: nothing to do at the end.
    CHECK(f.mail(ctx) == SMFIS_NOREPLY);
    CHECK(f.rcpt(ctx, "<zed@external.example>") == SMFIS_CONTINUE);
    CHECK(f.rcpt(ctx, "<nobody@fabrikam.com>") == SMFIS_REJECT);
    CHECK(f.data(ctx) == SMFIS_ACCEPT);
    f.filter.xxfi_abort(&ctx);  // Postfix's milter8_abort when that transaction ends
    // The next message of the session has a managed recipient: kept, and routed at its end.
    CHECK(f.mail(ctx) == SMFIS_NOREPLY);
    CHECK(f.rcpt(ctx, "<zed@external.example>") == SMFIS_CONTINUE);
    CHECK(f.rcpt(ctx, "<ann@contoso.com>") == SMFIS_CONTINUE);
    CHECK(f.data(ctx) == SMFIS_CONTINUE);
    CHECK(f.header(ctx, "Subject") == SMFIS_NOREPLY);
    REQUIRE(f.eom(ctx) == SMFIS_CONTINUE);
    CHECK(ctx.deleted == std::vector<std::string>{"<ann@contoso.com>"});
    CHECK(has_trace_header(ctx));
    f.close(ctx);
}

TEST_CASE("DATA without a reply (unix socket) or without negotiation") {
    FilterFixture f;
    SECTION("over a unix socket DATA has no reply, so it cannot accept: end of message does nothing") {
        Ctx ctx;
        REQUIRE(f.negotiate(ctx, "unix:/run/coexist/milter.sock") == SMFIS_CONTINUE);
        CHECK(f.mail(ctx) == SMFIS_NOREPLY);
        CHECK(f.rcpt(ctx, "<zed@external.example>") == SMFIS_CONTINUE);
        CHECK(f.data(ctx) == SMFIS_NOREPLY);
        CHECK(f.eom(ctx) == SMFIS_CONTINUE);
        CHECK(ctx.headers.empty());
        f.close(ctx);
    }
    SECTION("without negotiation (no session yet) a message with no managed recipient is let go") {
        Ctx ctx;
        CHECK(f.mail(ctx) == SMFIS_CONTINUE);
        CHECK(f.rcpt(ctx, "<zed@external.example>") == SMFIS_CONTINUE);
        CHECK(f.data(ctx) == SMFIS_ACCEPT);
        CHECK(f.mail(ctx) == SMFIS_CONTINUE);
        CHECK(f.rcpt(ctx, "<bob@contoso.com>") == SMFIS_CONTINUE);
        CHECK(f.data(ctx) == SMFIS_CONTINUE);
        CHECK(f.eom(ctx) == SMFIS_CONTINUE);
        CHECK(has_trace_header(ctx));
        f.close(ctx);
    }
}

TEST_CASE("negotiation without memory for the session falls back to replying at every stage") {
    FilterFixture f;
    Ctx ctx;
    ctx.fail_setpriv = true;
    unsigned long steps = 0;
    REQUIRE(f.negotiate(ctx, "inet:8890@127.0.0.1", &steps) == SMFIS_CONTINUE);
    CHECK((steps & (SMFIP_NR_MAIL | SMFIP_NR_HDR | SMFIP_NR_DATA)) == 0);
    CHECK(f.mail(ctx) == SMFIS_CONTINUE);
    CHECK(f.header(ctx, "Subject") == SMFIS_CONTINUE);
    CHECK(f.rcpt(ctx, "<ann@contoso.com>") == SMFIS_TEMPFAIL);  // and nowhere to keep the recipient
}

TEST_CASE("lookups that change nothing are logged only with log_lookups = yes; decisions always") {
    const bool log_lookups = GENERATE(false, true);
    FilterFixture f;
    f.config.log_lookups = log_lookups;
    CapturedLog log;
    Ctx ctx;
    f.mail(ctx);
    REQUIRE(f.rcpt(ctx, "<bob@contoso.com>") == SMFIS_CONTINUE);        // relay
    REQUIRE(f.rcpt(ctx, "<carol@contoso.com>") == SMFIS_CONTINUE);      // unknown: relay
    REQUIRE(f.rcpt(ctx, "<someone@example.org>") == SMFIS_CONTINUE);    // foreign
    REQUIRE(f.rcpt(ctx, "<ann@contoso.com>") == SMFIS_CONTINUE);        // rewrite
    REQUIRE(f.rcpt(ctx, "<dana@contoso.com>") == SMFIS_CONTINUE);       // dual
    REQUIRE(f.rcpt(ctx, "<nobody@fabrikam.com>") == SMFIS_REJECT);      // reject
    REQUIRE(f.eom(ctx) == SMFIS_CONTINUE);
    std::fflush(stderr);
    const std::string text = log.text();
    CHECK_THAT(text, Catch::Contains("4QID1: to=<ann@contoso.com>, action=rewrite, new=<ann@o365.contoso.com>"));
    CHECK_THAT(text, Catch::Contains("4QID1: to=<dana@contoso.com>, action=dual, new=<dana@o365.contoso.com>"));
    CHECK_THAT(text, Catch::Contains("to=<nobody@fabrikam.com>, action=reject"));
    CHECK((text.find("to=<bob@contoso.com>, action=relay") != std::string::npos) == log_lookups);
    CHECK((text.find("to=<carol@contoso.com>, action=relay") != std::string::npos) == log_lookups);
    CHECK(text.find("someone@example.org") == std::string::npos);  // foreign: never the milter's business
    CHECK(has_trace_header(ctx));
    f.close(ctx);
}
