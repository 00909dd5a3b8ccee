// coexist-map history by batch and time (text and CSV), dump/restore (the whole map with its
// audit trail onto a second map: same digest, same history; every refusal leaves the map as
// it was) and stats --json (design 10, 13.6).
#include <catch2/catch.hpp>

#include <sstream>

#include "coexist/map_store.hpp"
#include "commands.hpp"
#include "fixture.hpp"

using namespace coexist;

namespace {

// A map with a config file, so the same map can be driven in-process and by the real binary.
struct Map {
    test::TempDir dir;
    Config config;
    std::string config_file;
    explicit Map(bool init = true) : config(test::standard_config(dir.file("map"))) {
        config_file = dir.write("coexist.ini", test::standard_config_text(dir.file("map")));
        std::ostringstream out;
        if (init) tool::init(config, out);
    }
    // One write transaction stamped with `time`, as a command run then would have written it.
    void write_at(std::int64_t time, const std::string& command, const std::function<void(MapTxn&)>& change) {
        MapStore store(config.map_path, config.map_size, MapStore::Mode::read_write);
        store.write(ChangeContext{"admin", command, time}, change);
    }
    std::string run(const std::function<int(std::ostream&)>& command) {
        std::ostringstream out;
        command(out);
        return out.str();
    }
    std::string history(const tool::HistoryQuery& q = {}) {
        return run([&](std::ostream& o) { return tool::history(config, q, o); });
    }
    std::string digest() { return run([&](std::ostream& o) { return tool::digest(config, o); }); }
    std::string dump() { return run([&](std::ostream& o) { return tool::dump(config, o); }); }
    std::string restore_error(const std::string& text, bool replace = false) {
        const std::string file = dir.write("bad.jsonl", text);
        std::ostringstream out;
        try {
            tool::restore(config, file, replace, out);
        } catch (const tool::DataError& e) {
            return e.what();
        }
        return "no error";
    }
};

UserRecord record(State s, const std::string& batch, const std::string& target = "") {
    UserRecord r;
    r.state = s;
    r.batch = batch;
    r.target = target;
    return r;
}

constexpr std::int64_t kFriday = 1795510800;    // 2026-11-24T09:00:00Z
constexpr std::int64_t kSaturday = 1795597200;  // 2026-11-25T09:00:00Z
constexpr std::int64_t kSunday = 1795683600;    // 2026-11-26T09:00:00Z

// Friday: ann and bob join wave1, erin wave2, ann gets an alias. Saturday: wave1 goes dual.
// Sunday: bob moves to wave2 and is migrated; ann's alias goes.
void weekend(Map& m) {
    m.write_at(kFriday, "import users.csv", [](MapTxn& t) {
        t.put_user("ann@contoso.com", record(State::source, "wave1"));
        t.put_user("bob@contoso.com", record(State::source, "wave1"));
        t.put_user("erin@fabrikam.com", record(State::source, "wave2"));
        t.put_alias("anna@contoso.com", "ann@contoso.com");
    });
    m.write_at(kSaturday, "batch set wave1 dual", [](MapTxn& t) {
        t.put_user("ann@contoso.com", record(State::dual, "wave1"));
        t.put_user("bob@contoso.com", record(State::dual, "wave1"));
    });
    m.write_at(kSunday, "set", [](MapTxn& t) {
        t.put_user("bob@contoso.com", record(State::migrated, "wave2"));
        t.remove_alias("anna@contoso.com");
    });
}

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

}  // namespace

TEST_CASE("history of the whole map: every address, in the order the changes were made") {
    Map m;
    weekend(m);
    const auto all = lines(m.history());
    REQUIRE(all.size() == 8);
    CHECK(all[0] == "2026-11-24T09:00:00Z ann@contoso.com: (none) -> source, batch=wave1, by=admin (import users.csv)");
    CHECK(all[3] == "2026-11-24T09:00:00Z anna@contoso.com: (none) -> alias of ann@contoso.com, by=admin (import users.csv)");
    CHECK(all[4] == "2026-11-25T09:00:00Z ann@contoso.com: source -> dual, batch=wave1, by=admin (batch set wave1 dual)");
    CHECK(all[7] == "2026-11-26T09:00:00Z anna@contoso.com: alias of ann@contoso.com -> (none), by=admin (set)");
}

TEST_CASE("history --since: changes at or after the instant, with any offset") {
    Map m;
    weekend(m);
    CHECK(lines(m.history({std::nullopt, std::nullopt, "2026-11-25T09:00:00Z", "text"})).size() == 4);
    // The same instant written in Paris time.
    CHECK(lines(m.history({std::nullopt, std::nullopt, "2026-11-25T10:00:00+01:00", "text"})).size() == 4);
    CHECK(lines(m.history({std::nullopt, std::nullopt, "2026-11-25T09:00:01Z", "text"})).size() == 2);
    CHECK(m.history({std::nullopt, std::nullopt, "2030-01-01T00:00Z", "text"}).empty());
    // One address and a time together.
    CHECK(lines(m.history({"Bob@Contoso.com", std::nullopt, "2026-11-25T00:00Z", "text"})).size() == 2);
    // Without an offset the instant would depend on the relay's time zone: refused.
    CHECK_THROWS_AS(m.history({std::nullopt, std::nullopt, "2026-11-25T05:00:00", "text"}), tool::DataError);
    CHECK_THROWS_AS(m.history({std::nullopt, std::nullopt, "2026-11-25", "text"}), tool::DataError);
    CHECK_THROWS_AS(m.history({std::nullopt, std::nullopt, "2026-02-30T00:00Z", "text"}), tool::DataError);
}

TEST_CASE("history --batch: the batch recorded in the entry, else the user's current batch") {
    Map m;
    weekend(m);
    const auto wave1 = lines(m.history({std::nullopt, std::string("wave1"), std::nullopt, "text"}));
    // ann's two changes and bob's two while in wave1 (bob's move to wave2 is wave2's), and the
    // alias entries, which record no batch, by ann's current batch.
    REQUIRE(wave1.size() == 6);
    CHECK_THAT(wave1[0], Catch::Contains("ann@contoso.com: (none) -> source"));
    CHECK_THAT(wave1[1], Catch::Contains("bob@contoso.com: (none) -> source"));
    CHECK_THAT(wave1[2], Catch::Contains("anna@contoso.com: (none) -> alias of"));
    CHECK_THAT(wave1[5], Catch::Contains("anna@contoso.com: alias of ann@contoso.com -> (none)"));
    const auto wave2 = lines(m.history({std::nullopt, std::string("wave2"), std::nullopt, "text"}));
    REQUIRE(wave2.size() == 2);
    CHECK_THAT(wave2[0], Catch::Contains("erin@fabrikam.com: (none) -> source"));
    CHECK_THAT(wave2[1], Catch::Contains("bob@contoso.com: dual -> migrated, batch=wave2"));
    // A batch no change of the history is in: an error, as list and batch set say it (it printed
    // nothing and succeeded, so a misspelt batch looked like a quiet one).
    CHECK_THROWS_WITH(m.history({std::nullopt, std::string("nope"), std::nullopt, "text"}),
                      "unknown batch 'nope': no change of the map's history is in it");
    // Known, but nothing since: empty, no error.
    CHECK(m.history({std::nullopt, std::string("wave2"), std::string("2030-01-01T00:00:00Z"), "text"}).empty());
    // An address that never had a change is an error, as before.
    CHECK_THROWS_AS(m.history({"ghost@contoso.com", std::nullopt, std::nullopt, "text"}), tool::DataError);
}

TEST_CASE("history --format csv: a header row and RFC 4180 quoting") {
    Map m;
    m.write_at(kFriday, "import \"odd, name\".csv", [](MapTxn& t) {
        t.put_user("ann@contoso.com", record(State::dual, "wave,1", "ann@contoso.onmicrosoft.com"));
    });
    const auto csv = m.history({std::nullopt, std::nullopt, std::nullopt, "csv"});
    CHECK(csv == "time,address,old,new,batch,by,command\n"
                 "2026-11-24T09:00:00Z,ann@contoso.com,,dual target=ann@contoso.onmicrosoft.com,\"wave,1\",admin,"
                 "\"import \"\"odd, name\"\".csv\"\n");
    // No match: the header alone, so a script always gets its columns.
    CHECK(m.history({std::nullopt, std::nullopt, "2030-01-01T00:00Z", "csv"}) == "time,address,old,new,batch,by,command\n");
}

TEST_CASE("dump, then restore into a second map: the same digest, history, stats and dump") {
    Map a;
    weekend(a);
    // A directory-owned user with an override, a scheduled change, a command that is not
    // UTF-8, and the directory's sync state.
    a.write_at(kSunday + 60, std::string("import caf\xe9.csv"), [](MapTxn& t) {
        UserRecord r = record(State::source, "wave3");
        r.owner = Owner::directory;
        r.override_state = State::dual;
        r.dn = "uid=carl,ou=people,dc=contoso,dc=com";
        r.entry_uuid = "0b5c9a2e-1111-4a4a-9c9c-0123456789ab";
        r.pending_state = State::migrated;
        r.pending_at = 4102444800;  // 2100-01-01T00:00:00Z: not due in this test's lifetime
        t.put_user("carl@contoso.com", r);
        t.put_alias("c.r@contoso.com", "carl@contoso.com");
        // A scheduled change already due: route() acts on it, the next write stores it.
        UserRecord dora = record(State::source, "wave3");
        dora.pending_state = State::migrated;
        dora.pending_at = kSunday;
        t.put_user("dora@contoso.com", dora);
        t.put_meta(meta::kDirectoryCookie, std::string("rid=001,csn=20261126\x01\xff", 22));
        t.put_meta(meta::kDirectorySyncedAt, "1795683660");
        t.put_meta(meta::kDirectoryFollowing, "refreshAndPersist since 2026-11-26T09:01:00Z");
    });
    const std::string dump = a.dump();
    CHECK_THAT(dump, Catch::StartsWith("{\"coexist_dump\":1,\"schema\":2,"));
    CHECK_THAT(dump, Catch::Contains("\"pending\":{\"state\":\"migrated\",\"at\":4102444800}"));
    CHECK_THAT(dump, Catch::Contains("\"command\":{\"base64\":"));
    CHECK_THAT(dump, !Catch::Contains("directory_following"));  // a process on this host, not the map

    Map b;
    const std::string file = b.dir.write("a.jsonl", dump);
    std::ostringstream out;
    tool::restore(b.config, file, false, out);
    CHECK(out.str() == "restored 5 users, 1 aliases, 11 audit entries and 2 meta lines from " + file + " into " +
                           b.config.map_path + "\n");
    CHECK(b.digest() == a.digest());
    CHECK(b.history() == a.history());
    CHECK(b.history({std::nullopt, std::nullopt, std::nullopt, "csv"}) == a.history({std::nullopt, std::nullopt, std::nullopt, "csv"}));
    // Byte for byte, apart from the header's time of creation.
    const auto body = [](const std::string& d) { return d.substr(d.find('\n')); };
    CHECK(body(b.dump()) == body(dump));

    MapStore store(b.config.map_path, b.config.map_size, MapStore::Mode::read_write);
    store.read([](MapTxn& t) {
        const auto carl = t.user("carl@contoso.com");
        REQUIRE(carl);
        CHECK(carl->override_state == State::dual);
        CHECK(carl->pending_state == State::migrated);
        CHECK(carl->pending_at == 4102444800);
        CHECK(carl->changed == kSunday + 60);
        CHECK(t.meta(meta::kDirectoryCookie) == std::string("rid=001,csn=20261126\x01\xff", 22));
        CHECK(t.aliases_of("carl@contoso.com") == std::vector<std::string>{"c.r@contoso.com"});
    });
    // The next change is numbered after the restored ones and shows last.
    store.write(ChangeContext{"admin", "set", kSunday + 120},
                [](MapTxn& t) { t.put_user("erin@fabrikam.com", record(State::migrated, "wave2")); });
    CHECK_THAT(lines(b.history()).back(), Catch::Contains("erin@fabrikam.com: source -> migrated"));
    // The restored schedule index found dora's due change: that write stored it, audited.
    store.read([](MapTxn& t) {
        const auto dora = t.user("dora@contoso.com");
        REQUIRE(dora);
        CHECK(dora->state == State::migrated);
        CHECK(!dora->pending_state);
    });
    CHECK_THAT(b.history({"dora@contoso.com", std::nullopt, std::nullopt, "text"}),
               Catch::Contains("-> migrated, batch=wave3, by=admin (scheduled change due 2026-11-26T09:00:00Z"));
}

TEST_CASE("restore refuses, naming the line, and leaves the map as it was") {
    Map a;
    weekend(a);
    const std::string good = a.dump();
    Map b;
    b.write_at(kFriday, "set", [](MapTxn& t) { t.put_user("zoe@contoso.com", record(State::migrated, "")); });
    const std::string before = b.dump().substr(b.dump().find('\n'));
    const std::string digest = b.digest();

    // A map that is not empty, without --replace.
    CHECK_THAT(b.restore_error(good), Catch::Contains("is not empty (1 users, 0 aliases, 1 audit entries)"));

    const std::string header =
        "{\"coexist_dump\":1,\"schema\":2,\"users\":1,\"aliases\":0,\"audit\":0,\"meta\":0}\n";
    SECTION("a newer schema") {
        CHECK_THAT(b.restore_error("{\"coexist_dump\":1,\"schema\":99,\"version\":\"9.0\",\"users\":0,\"aliases\":0,"
                                   "\"audit\":0,\"meta\":0}\n", true),
                   Catch::Contains(":1: the dump is of map schema 99, newer than"));
        CHECK_THAT(b.restore_error("{\"coexist_dump\":1,\"schema\":99,\"version\":9,\"users\":0,\"aliases\":0,"
                                   "\"audit\":0,\"meta\":0}\n", true),
                   Catch::Contains(":1: \"version\" is not a string"));
    }
    SECTION("a newer dump format") {
        CHECK_THAT(b.restore_error("{\"coexist_dump\":2,\"schema\":2,\"users\":0,\"aliases\":0,\"audit\":0,\"meta\":0}\n",
                                   true),
                   Catch::Contains(":1: dump format 2 is newer"));
    }
    SECTION("not a dump") {
        CHECK_THAT(b.restore_error("address,state\nann@contoso.com,migrated\n", true),
                   Catch::Contains(":1: not a coexist-map dump"));
        CHECK_THAT(b.restore_error("{\"user\":\"ann@contoso.com\",\"state\":\"dual\"}\n", true),
                   Catch::Contains(":1: not a coexist-map dump"));
    }
    SECTION("a line that is not JSON") {
        CHECK_THAT(b.restore_error(header + "{\"user\":\"ann@contoso.com\",\"state\":\"dual\"\n", true),
                   Catch::Contains("bad.jsonl:2: not JSON"));
    }
    SECTION("a bad state, an unknown field, an address outside the managed domains") {
        CHECK_THAT(b.restore_error(header + "{\"user\":\"ann@contoso.com\",\"state\":\"gone\"}\n", true),
                   Catch::Contains("bad.jsonl:2: \"state\": expected source, migrated or dual"));
        CHECK_THAT(b.restore_error(header + "{\"user\":\"ann@contoso.com\",\"state\":\"dual\",\"colour\":1}\n", true),
                   Catch::Contains(":2: unknown field \"colour\""));
        CHECK_THAT(b.restore_error(header + "{\"user\":\"ann@example.org\",\"state\":\"dual\"}\n", true),
                   Catch::Contains(":2: ") && Catch::Contains("example.org"));
        CHECK_THAT(b.restore_error(header + "{\"user\":\"ann@contoso.com\",\"state\":\"dual\",\"changed\":-5}\n", true),
                   Catch::Contains(":2: \"changed\" is not a whole number"));
    }
    SECTION("a truncated dump, an alias before its user, a user twice, a derived meta key") {
        CHECK_THAT(b.restore_error(good.substr(0, good.rfind('\n', good.size() - 2) + 1), true),
                   Catch::Contains("the header announces 8 audit entries, the file holds 7 (a truncated dump?)"));
        CHECK_THAT(b.restore_error("{\"coexist_dump\":1,\"schema\":2,\"users\":1,\"aliases\":1,\"audit\":0,\"meta\":0}\n"
                                   "{\"alias\":\"a@contoso.com\",\"primary\":\"ann@contoso.com\"}\n"
                                   "{\"user\":\"ann@contoso.com\",\"state\":\"dual\"}\n", true),
                   Catch::Contains(":2: a@contoso.com: its user ann@contoso.com is not on an earlier line"));
        CHECK_THAT(b.restore_error(header + "{\"user\":\"ann@contoso.com\",\"state\":\"dual\"}\n"
                                            "{\"user\":\"Ann@Contoso.com\",\"state\":\"dual\"}\n", true),
                   Catch::Contains(":3: ann@contoso.com is given twice"));
        CHECK_THAT(b.restore_error(header + "{\"meta\":\"schema_version\",\"value\":\"1\"}\n", true),
                   Catch::Contains(":2: meta \"schema_version\" is not one a dump carries"));
    }
    // Whatever failed, nothing changed.
    CHECK(b.dump().substr(b.dump().find('\n')) == before);
    CHECK(b.digest() == digest);
}

TEST_CASE("restore keeps a target the map held that is no host name, and says so; history shows control bytes as '?'") {
    // A map written before targets had to be host names: its dump must still restore.
    Map a;
    a.write_at(kFriday, "set", [](MapTxn& t) {
        t.put_user("ann@contoso.com", record(State::migrated, "", "ann@-old-.example"));
        t.put_user("bob@contoso.com", record(State::migrated, "", "bob@elsewhere.example"));
    });
    const std::string dump = a.dump();
    Map b;
    std::ostringstream out;
    tool::restore(b.config, b.dir.write("a.jsonl", dump), false, out);
    CHECK_THAT(out.str(), Catch::Contains("warning: target restored as it was, no host name mail can be sent to: "
                                          "ann@contoso.com -> ann@-old-.example: the label '-old-' begins or ends "
                                          "with a hyphen"));
    CHECK_THAT(out.str(), !Catch::Contains("bob@"));
    CHECK(b.digest() == a.digest());
    // What the admin types is still refused.
    CHECK_THROWS_WITH(tool::set(b.config, "cat@contoso.com", "migrated", std::string("cat@-old-.example"),
                                std::nullopt, out),
                      Catch::Contains("its domain is no host name mail can be sent to"));

    // A meta key of other bytes than coexist's names is no dump's.
    Map c;
    CHECK_THAT(c.restore_error("{\"coexist_dump\":1,\"schema\":2,\"users\":0,\"aliases\":0,\"audit\":0,\"meta\":1}\n"
                               "{\"meta\":\"k\\u001b[31m\",\"value\":\"v\"}\n"),
               Catch::Contains(":2: meta \"k?[31m\" is not one a dump carries"));

    // An audit entry restored with control bytes in what it records is printed with '?'.
    Map d;
    d.write_at(kFriday, "import w\x1b[2Jave.csv", [](MapTxn& t) { t.put_user("zed@contoso.com", record(State::source, "")); });
    const std::string shown = d.history({std::string("zed@contoso.com"), std::nullopt, std::nullopt, "text"});
    CHECK_THAT(shown, Catch::Contains("(import w?[2Jave.csv)"));
    CHECK(shown.find('\x1b') == std::string::npos);
    const std::string csv = d.history({std::string("zed@contoso.com"), std::nullopt, std::nullopt, "csv"});
    CHECK(csv.find('\x1b') == std::string::npos);
}

TEST_CASE("restore --replace replaces a map whole") {
    Map a;
    weekend(a);
    Map b;
    b.write_at(kFriday, "set", [](MapTxn& t) { t.put_user("zoe@contoso.com", record(State::migrated, "")); });
    std::ostringstream out;
    tool::restore(b.config, b.dir.write("a.jsonl", a.dump()), true, out);
    CHECK(b.digest() == a.digest());
    CHECK(b.history() == a.history());  // zoe's history went with her
    CHECK_THROWS_AS(b.history({"zoe@contoso.com", std::nullopt, std::nullopt, "text"}), tool::DataError);
}

TEST_CASE("the binary: dump | restore - on a new map directory, exit statuses") {
    Map a;
    weekend(a);
    Map b(false);  // no init: restore makes the map, as init would
    const std::string dump_file = a.dir.file("dump.jsonl");
    REQUIRE(std::system(("'" + std::string(COEXIST_MAP_BINARY) + "' -c '" + a.config_file + "' dump > '" + dump_file +
                         "'").c_str()) == 0);
    const auto restored = test::run_tool(b.config_file, {"restore", dump_file});
    CHECK(restored.status == 0);
    CHECK(test::run_tool(b.config_file, {"digest"}).out == test::run_tool(a.config_file, {"digest"}).out);
    CHECK(test::run_tool(b.config_file, {"history", "--format", "csv"}).out ==
          test::run_tool(a.config_file, {"history", "--format", "csv"}).out);
    // Again: the map is no longer empty (exit 2, data error).
    const auto again = test::run_tool(b.config_file, {"restore", dump_file});
    CHECK(again.status == 2);
    CHECK_THAT(again.out, Catch::Contains("is not empty") && Catch::Contains("(map unchanged)"));
    CHECK(test::run_tool(a.config_file, {"history", "--since", "yesterday"}).status == 2);  // a bad time is a data error, as --at's
    // Not a dump: refused before a map is made where there was none.
    Map c(false);
    const auto not_dump = test::run_tool(c.config_file, {"restore", a.dir.write("users.csv", "address\nann@contoso.com\n")});
    CHECK(not_dump.status == 2);
    CHECK_THAT(not_dump.out, Catch::Contains("users.csv:1: not a coexist-map dump"));
    CHECK(!std::filesystem::exists(c.config.map_path));
    CHECK(test::run_tool(a.config_file, {"history", "--format", "xml"}).status == 1);
}

TEST_CASE("stats: per batch by state, per domain, scheduled changes") {
    Map m;
    weekend(m);
    m.write_at(kSunday, "set --at", [](MapTxn& t) {
        UserRecord r = record(State::source, "wave2");
        r.pending_state = State::migrated;
        r.pending_at = 4102444800;
        t.put_user("erin@fabrikam.com", r);
    });
    const std::string text = m.run([&](std::ostream& o) { return tool::stats(m.config, false, o); });
    CHECK_THAT(text, Catch::Contains("users: 3 (source 1, migrated 1, dual 1; 1 scheduled changes)\naliases: 0\n"
                                     "batches: 2\n"
                                     "  batch wave1: 1 (source 0, migrated 0, dual 1)\n"
                                     "  batch wave2: 2 (source 1, migrated 1, dual 0; 1 scheduled changes)\n"
                                     "scheduled changes: 1 (0 due, next at 2100-01-01T00:00:00Z)\n"));
}
