// Schedules and batches (design 10, 13.1, 13.6): an --at time read only with an offset, a pending
// change acted on by route() from its second on, stored for good by the next write with its
// audit entry, batch set/cancel/list, and unknown_recipient = new_system.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include "coexist/map_reader.hpp"
#include "coexist/map_store.hpp"
#include "coexist/route.hpp"
#include "coexist/utc_time.hpp"
#include "commands.hpp"
#include "commands_scripts.hpp"
#include "fixture.hpp"

using namespace coexist;

TEST_CASE("--at times are ISO 8601 with an explicit offset") {
    CHECK(parse_iso8601("1970-01-01T00:00:00Z") == 0);
    CHECK(parse_iso8601("2026-12-05T22:00:00Z") == 1796508000);
    CHECK(parse_iso8601("2026-12-05T23:00:00+01:00") == 1796508000);
    CHECK(parse_iso8601("2026-12-05T17:30-0430") == 1796508000);
    CHECK(parse_iso8601("2026-12-05 22:00Z") == 1796508000);
    CHECK(parse_iso8601("2024-02-29T00:00:00Z") == 1709164800);
    // No offset: each relay would read it in its own zone. Refused, as is anything malformed.
    for (const char* bad : {"2026-12-05T22:00:00", "2026-12-05", "2026-13-01T00:00Z", "2025-02-29T00:00Z",
                            "2026-12-05T24:00Z", "2026-12-05T22:60Z", "2026-12-05T22:00:00Z ", "2026-12-05T22:00+1",
                            "tomorrow", "", "2026-12-05T22:00:00+25:00"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_iso8601(bad));
    }
    CHECK(utc_timestamp(*parse_iso8601("2026-12-05T23:00:00+01:00")) == "2026-12-05T22:00:00Z");
}

namespace {

struct ScheduledMap {
    test::TempDir dir;
    Config config = test::standard_config(dir.file("map"));
    std::ostringstream out;
    ScheduledMap() {
        tool::init(config, out);
        tool::set(config, "ann@contoso.com", "source", std::nullopt, std::string("wave1"), out);
        tool::set(config, "bob@contoso.com", "source", std::nullopt, std::string("wave1"), out);
        tool::set(config, "cy@contoso.com", "source", std::nullopt, std::string("wave2"), out);
    }
    std::optional<UserRecord> user(const std::string& key) {
        MapStore store(config.map_path, config.map_size, MapStore::Mode::read_only);
        std::optional<UserRecord> r;
        store.read([&](MapTxn& t) { r = t.user(key); });
        return r;
    }
};

std::int64_t now() { return static_cast<std::int64_t>(std::time(nullptr)); }

std::string in_an_hour() { return utc_timestamp(now() + 3600); }

}  // namespace

TEST_CASE("a scheduled batch flips at its second, for route() and every reader") {
    ScheduledMap m;
    const std::string at = in_an_hour();
    const std::int64_t when = *parse_iso8601(at);
    tool::batch_set(m.config, "wave1", "migrated", at, false, m.out);

    MapReader reader(m.config.map_path);
    CHECK(route(m.config, reader, "ann@contoso.com").action == Action::relay);  // not yet
    CHECK(explain_route(m.config, reader, "ann@contoso.com", when - 1).decision.action == Action::relay);
    const auto at_time = explain_route(m.config, reader, "ann@contoso.com", when);
    CHECK(at_time.decision.action == Action::rewrite);
    CHECK(at_time.decision.address == "ann@o365.contoso.com");
    CHECK(at_time.decision.detail.find("scheduled migrated at " + at) != std::string::npos);
    bool shown = false;
    for (const auto& s : at_time.steps) shown = shown || s.find("scheduled change: migrated at " + at) == 0;
    CHECK(shown);
    // An alias hop reaches the primary's schedule too.
    tool::alias(m.config, "anna@contoso.com", "ann@contoso.com", m.out);
    CHECK(explain_route(m.config, reader, "anna@contoso.com", when).decision.action == Action::rewrite);
    CHECK(explain_route(m.config, reader, "cy@contoso.com", when).decision.action == Action::relay);  // other batch

    // The first write at or after the time stores it, audited at the scheduled second.
    MapStore store(m.config.map_path, m.config.map_size, MapStore::Mode::read_write);
    store.write(ChangeContext{"test", "set", when - 10}, [](MapTxn&) {});
    CHECK(m.user("ann@contoso.com")->pending_state == State::migrated);
    store.write(ChangeContext{"test", "set", when + 5}, [](MapTxn&) {});
    const auto ann = m.user("ann@contoso.com");
    CHECK(ann->state == State::migrated);
    CHECK_FALSE(ann->pending_state);
    std::vector<AuditEntry> h;
    store.read([&](MapTxn& t) { h = t.history("ann@contoso.com"); });
    REQUIRE(!h.empty());
    CHECK(h.back().time == when);
    CHECK(h.back().new_value == "migrated");
    CHECK(h.back().command.find("scheduled change due " + at) == 0);
}

TEST_CASE("stats counts a scheduled change whose time has come among all of them") {
    ScheduledMap m;
    const std::int64_t t0 = now() - 200;
    {
        // Written 200 s ago: ann's change due 100 s ago (no write since has stored it), bob's
        // in an hour.
        MapStore store(m.config.map_path, m.config.map_size, MapStore::Mode::read_write);
        store.write(ChangeContext{"test", "batch set", t0}, [&](MapTxn& t) {
            for (const auto& [key, at] : {std::pair<std::string, std::int64_t>{"ann@contoso.com", t0 + 100},
                                          std::pair<std::string, std::int64_t>{"bob@contoso.com", now() + 3600}}) {
                const auto existing = t.user(key);
                UserRecord r = *existing;
                r.pending_state = State::migrated;
                r.pending_at = at;
                t.put_user(key, r, existing);
            }
        });
    }
    std::ostringstream text;
    tool::stats(m.config, text);
    CHECK_THAT(text.str(), Catch::Contains("scheduled changes: 2 (1 due, next at " + utc_timestamp(now() + 3600).substr(0, 13)));
    std::ostringstream json;
    tool::stats(m.config, true, json);
    CHECK_THAT(json.str(), Catch::Contains("\"total\": 2") && Catch::Contains("\"due\": 1"));
}

TEST_CASE("batch set now replaces a schedule; cancel drops it; unknown batches are refused") {
    ScheduledMap m;
    const std::string first = in_an_hour();
    tool::batch_set(m.config, "wave1", "migrated", first, false, m.out);
    // A rollback now must not be undone by the older schedule; it says what it replaced.
    std::ostringstream rollback;
    tool::batch_set(m.config, "wave1", "source", std::nullopt, false, rollback);
    CHECK(rollback.str().find("replaced 2 pending change to migrated at " + first) != std::string::npos);
    CHECK_FALSE(m.user("ann@contoso.com")->pending_state);
    CHECK(m.user("ann@contoso.com")->state == State::source);

    tool::batch_set(m.config, "wave1", "dual", in_an_hour(), false, m.out);
    std::ostringstream list;
    tool::batch_list(m.config, list);
    CHECK(list.str().find("wave1: 2 users (source 2, migrated 0, dual 0)") != std::string::npos);
    CHECK(list.str().find("pending: 2 users -> dual at") != std::string::npos);
    CHECK(list.str().find("wave2: 1 user (source 1, migrated 0, dual 0)") != std::string::npos);

    // --dry-run changes nothing.
    std::ostringstream dry;
    tool::batch_set(m.config, "wave2", "migrated", std::nullopt, true, dry);
    CHECK(dry.str().find("cy@contoso.com: source -> migrated") != std::string::npos);
    CHECK(m.user("cy@contoso.com")->state == State::source);

    std::ostringstream cancelled;
    tool::batch_cancel(m.config, "wave1", cancelled);
    CHECK(cancelled.str() == "batch wave1: 2 pending changes cancelled\n");
    CHECK_FALSE(m.user("bob@contoso.com")->pending_state);
    CHECK_THROWS_AS(tool::batch_cancel(m.config, "wave1", m.out), tool::DataError);  // nothing left to cancel
    CHECK_THROWS_AS(tool::batch_set(m.config, "wave9", "migrated", std::nullopt, false, m.out), tool::DataError);
    CHECK_THROWS_AS(tool::batch_set(m.config, "wave1", "gone", std::nullopt, false, m.out), tool::DataError);
    CHECK_THROWS_AS(tool::batch_set(m.config, "wave1", "migrated", std::string("2020-01-01T00:00:00Z"), false, m.out),
                    tool::DataError);
    CHECK_THROWS_AS(tool::batch_set(m.config, "wave1", "migrated", std::string("2030-01-01T00:00:00"), false, m.out),
                    tool::DataError);
    // set --at on a user the map does not know is refused: a schedule changes a known user.
    CHECK_THROWS_AS(tool::set(m.config, "zed@contoso.com", std::string("migrated"), std::nullopt, std::nullopt, false,
                              in_an_hour(), m.out),
                    tool::DataError);
}

TEST_CASE("an empty batch name is refused by every command that selects a batch: it is no batch, not the rest") {
    // `coexist-map batch set "$WAVE" source` with WAVE unset must not roll back every user
    // without a batch (helper 68: it did, exit 0, "batch : 2 users set to source").
    ScheduledMap m;
    tool::set(m.config, "dee@contoso.com", "migrated", std::nullopt, std::nullopt, m.out);
    tool::set(m.config, "eve@contoso.com", "migrated", std::nullopt, std::nullopt, m.out);
    CHECK_THROWS_WITH(tool::batch_set(m.config, "", "source", std::nullopt, false, m.out),
                      Catch::Contains("an empty batch name"));
    CHECK_THROWS_AS(tool::batch_set(m.config, "", "source", in_an_hour(), false, m.out), tool::DataError);
    CHECK_THROWS_AS(tool::batch_set(m.config, "", "source", std::nullopt, true, m.out), tool::DataError);
    CHECK_THROWS_AS(tool::batch_cancel(m.config, "", m.out), tool::DataError);
    CHECK_THROWS_AS(tool::list(m.config, std::nullopt, std::string(), m.out), tool::DataError);
    CHECK_THROWS_AS(tool::commands(m.config, tool::ScriptSystem::gam, std::string(), std::nullopt, m.out),
                    tool::DataError);
    CHECK_THROWS_AS(tool::history(m.config, tool::HistoryQuery{std::nullopt, std::string(), std::nullopt, "text"}, m.out),
                    tool::DataError);
    for (const char* key : {"dee@contoso.com", "eve@contoso.com"}) {
        CAPTURE(key);
        CHECK(m.user(key)->state == State::migrated);
        CHECK_FALSE(m.user(key)->pending_state);
    }
}

TEST_CASE("batch set and cancel count each user once when the map grows under them (the write runs again)") {
    // max_size = 1M: 20,000 users fill it, and every batch-wide write grows it; MapStore then
    // runs the command's body again, which counted on from the first run (34,790 users set).
    test::TempDir dir;
    Config config = test::standard_config(dir.file("map"));
    config.map_size = std::size_t{1} << 20;
    std::ostringstream out, err;
    tool::init(config, out);
    {
        std::ofstream csv(dir.file("big.csv"));
        csv << "address,state,batch\n";
        for (int i = 0; i < 20000; ++i) csv << "u" << i << "@contoso.com,source,big\n";
    }
    tool::import_csv(config, dir.file("big.csv"), tool::ImportOptions{}, out, err);
    for (const char* state : {"migrated", "dual"}) {
        std::ostringstream set;
        tool::batch_set(config, "big", state, std::nullopt, false, set);
        CHECK(set.str() == fmt::format("batch big: 20000 users set to {}\n", state));
    }
    tool::batch_set(config, "big", "migrated", in_an_hour(), false, out);
    std::ostringstream cancelled;
    tool::batch_cancel(config, "big", cancelled);
    CHECK(cancelled.str() == "batch big: 20000 pending changes cancelled\n");
}

TEST_CASE("imported schedules must lie ahead; long addresses are refused before LMDB sees them") {
    ScheduledMap m;
    test::TempDir d;
    const std::string past = d.write("past.csv", "address,state,pending_state,pending_at\n"
                                                 "ann@contoso.com,source,migrated,2020-01-01T00:00:00Z\n");
    CHECK_THROWS_AS(tool::import_csv(m.config, past, std::nullopt, false, m.out), tool::DataError);
    CHECK_FALSE(m.user("ann@contoso.com")->pending_state);
    const std::string long_local(400, 'a');
    CHECK_THROWS_WITH(tool::set(m.config, long_local + "@contoso.com", "migrated", std::nullopt, std::nullopt, m.out),
                      Catch::Contains("longer than an address can be"));
}

TEST_CASE("unknown_recipient = new_system sends unknown users to the routing domain") {
    test::TempDir dir;
    std::string text = test::standard_config_text(dir.file("map"));
    text.replace(text.find("unknown_recipient = relay"), 25, "unknown_recipient = new_system");
    const Config config = parse_config(text, "test.ini");
    std::ostringstream out;
    tool::init(config, out);
    tool::set(config, "ann@contoso.com", "source", std::nullopt, std::nullopt, out);
    MapReader reader(config.map_path);
    const auto d = route(config, reader, "<Zed+Tag@Contoso.NET>");
    CHECK(d.action == Action::rewrite);
    CHECK(d.address == "zed+tag@o365.contoso.com");
    CHECK(route(config, reader, "ann@contoso.com").action == Action::relay);  // known users keep their state
    // A local part that needs quotes is quoted once, as Postfix's external form has it.
    CHECK(route(config, reader, "\"john doe\"@contoso.com").address == "\"john doe\"@o365.contoso.com");
    // fabrikam.com's own `unknown_recipient = reject` still wins there (tempfail: nobody of it in the map).
    CHECK(route(config, reader, "x@fabrikam.com").action == Action::tempfail);
}

TEST_CASE("transport mode keeps the recipient and answers the next hop; rewrite domains beside it rewrite") {
    test::TempDir dir;
    std::string text = test::standard_config_text(dir.file("map"));
    text.replace(text.find("aliases = contoso.net\n"), 22,
                 "aliases = contoso.net\nmode = transport\nnew_system_nexthop = smtp:[newsys.example]:2525\n");
    const Config config = parse_config(text, "test.ini");
    std::ostringstream out;
    tool::init(config, out);
    tool::set(config, "ann@contoso.com", "migrated", std::nullopt, std::nullopt, out);
    tool::set(config, "dan@contoso.com", "dual", std::nullopt, std::nullopt, out);
    tool::set(config, "bob@contoso.com", "source", std::nullopt, std::nullopt, out);
    tool::set(config, "erin@fabrikam.com", "migrated", std::nullopt, std::nullopt, out);
    tool::alias(config, "anna@contoso.com", "ann@contoso.com", out);
    MapReader reader(config.map_path);
    const auto ann = route(config, reader, "<Ann+news@contoso.net>");
    CHECK(ann.action == Action::transport);
    CHECK(ann.address == "smtp:[newsys.example]:2525");
    CHECK(route(config, reader, "anna@contoso.com").action == Action::transport);
    // dual still adds the routing address: a second copy needs a second recipient.
    const auto dan = route(config, reader, "dan@contoso.com");
    CHECK(dan.action == Action::dual);
    CHECK(dan.address == "dan@o365.contoso.com");
    CHECK(route(config, reader, "bob@contoso.com").action == Action::relay);
    CHECK(route(config, reader, "erin@fabrikam.com").action == Action::rewrite);  // the other domain rewrites
    // An explicit target names another address on the new system: only a rewrite reaches it.
    tool::set(config, "hal@contoso.com", "migrated", std::string("hal.x@contoso.onmicrosoft.com"), std::nullopt, out);
    const auto hal = route(config, reader, "hal@contoso.com");
    CHECK(hal.action == Action::rewrite);
    CHECK(hal.address == "hal.x@contoso.onmicrosoft.com");
    const auto e = explain_route(config, reader, "ann@contoso.com", now());
    CHECK(e.steps.front().find("mode transport") != std::string::npos);
    // An alias in the other domain is its user's address there: the user's domain decides.
    tool::alias(config, "ann2@fabrikam.com", "ann@contoso.com", out);    // ann's domain: transport
    tool::alias(config, "erin2@contoso.com", "erin@fabrikam.com", out);  // erin's domain: rewrite
    const auto ann2 = route(config, reader, "ann2@fabrikam.com");
    CHECK(ann2.action == Action::transport);
    CHECK(ann2.address == "smtp:[newsys.example]:2525");
    const auto erin2 = route(config, reader, "erin2@contoso.com");
    CHECK(erin2.action == Action::rewrite);
    CHECK(erin2.address == "erin@fabrikam.onmicrosoft.com");
}

TEST_CASE("transport mode needs a next hop, and a next hop needs transport mode") {
    const std::string base = "[domain contoso.com]\nrouting_domain = o365.contoso.com\n";
    CHECK_THROWS_WITH(parse_config(base + "mode = transport\n", "t.ini"),
                      Catch::Contains("needs new_system_nexthop"));
    CHECK_THROWS_WITH(parse_config(base + "new_system_nexthop = smtp:[x]\n", "t.ini"),
                      Catch::Contains("only used with mode = transport"));
    CHECK_THROWS_WITH(parse_config(base + "mode = route\n", "t.ini"), Catch::Contains("rewrite or transport"));
    for (const char* bad : {"[x]", ":[x]", "smtp:[x] y", "sm tp:[x]", "mx.example.com:25", "smtp:", "discard:x",
                            "error:5.1.1 no", "Discard:x", "smtp::25", "smtp:[]", "smtp:[]:25", "smtp:[x.example",
                            "smtp:[x.example]:", "smtp:[x.example]:99999", "smtp:[x.example]25", "smtp:x.example:",
                            "smtp:[ipv6:not-an-address]", "lmtp:unix:relative.sock", "smtp:bad_host.example"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(parse_config(base + "mode = transport\nnew_system_nexthop = " + bad + "\n", "t.ini"),
                        ConfigError);
    }
    // A managed domain or one of its aliases is the old system (its MX), bracketed or not.
    for (const char* managed : {"smtp:contoso.com", "smtp:[Contoso.NET]:25", "relay:[fabrikam.com]"}) {
        CAPTURE(managed);
        CHECK_THROWS_WITH(parse_config(base + "aliases = contoso.net\nmode = transport\nnew_system_nexthop = " + managed +
                                           "\n[domain fabrikam.com]\nrouting_domain = fabrikam.onmicrosoft.com\n",
                                       "t.ini"),
                          Catch::Contains("is a managed domain: its MX is the old system"));
    }
    const Config ok = parse_config(base + "mode = transport\nnew_system_nexthop = relay:[10.0.0.1]:25\n", "t.ini");
    CHECK(ok.domains[0].mode == DomainMode::transport);
    CHECK(ok.domains[0].new_system_nexthop == "relay:[10.0.0.1]:25");
    for (const char* good : {"smtp:[ipv6:2001:db8::25]:25", "smtp:mx.newsys.example", "smtp:mx.newsys.example:2525",
                             "smtp:[newsys.example]:submission", "lmtp:unix:/run/newsys/lmtp.sock",
                             "lmtp:inet:10.0.0.1:24", "smtp:192.0.2.25"}) {
        CAPTURE(good);
        CHECK(parse_config(base + "mode = transport\nnew_system_nexthop = " + good + "\n", "t.ini")
                  .domains[0].new_system_nexthop == good);
    }
}

TEST_CASE("export shows a pending change in two more columns, and import reads it back") {
    ScheduledMap m;
    const std::string at = in_an_hour();
    tool::batch_set(m.config, "wave1", "migrated", at, false, m.out);
    std::ostringstream exported;
    tool::export_csv(m.config, exported);
    CHECK(exported.str().rfind("address,state,target,batch,aliases,pending_state,pending_at\n", 0) == 0);
    CHECK(exported.str().find("ann@contoso.com,source,,wave1,,migrated," + at + "\n") != std::string::npos);
    CHECK(exported.str().find("cy@contoso.com,source,,wave2,,,\n") != std::string::npos);

    // Into a second map: the schedules come along.
    test::TempDir other;
    std::string text = test::standard_config_text(other.file("map"));
    const Config second = parse_config(text, "second.ini");
    tool::init(second, m.out);
    const std::string file = other.write("export.csv", exported.str());
    tool::import_csv(second, file, std::nullopt, false, m.out);
    MapStore store(second.map_path, second.map_size, MapStore::Mode::read_only);
    store.read([&](MapTxn& t) {
        const auto ann = t.user("ann@contoso.com");
        REQUIRE(ann);
        CHECK(ann->pending_state == State::migrated);
        CHECK(ann->pending_at == *parse_iso8601(at));
        CHECK_FALSE(t.user("cy@contoso.com")->pending_state);
    });
    // A file without the columns drops a schedule (the file says what the state is now).
    const std::string plain = other.write("plain.csv", "address,state,batch\nann@contoso.com,source,wave1\n");
    tool::import_csv(second, plain, std::nullopt, false, m.out);
    store.read([&](MapTxn& t) { CHECK_FALSE(t.user("ann@contoso.com")->pending_state); });
    // Half a schedule is a bad row.
    const std::string half = other.write("half.csv", "address,pending_state,pending_at\nann@contoso.com,migrated,\n");
    CHECK_THROWS_AS(tool::import_csv(second, half, std::nullopt, false, m.out), tool::DataError);
}
