// coexist-map commands gam|exo (maps/tool/commands_scripts.cpp): the quoting for each shell, and
// the selection (batch, state, a directory override's effective state, errors). The whole
// output of a sample batch against a reviewed file is tests/tool/test_map_scripts.py.
#include <catch2/catch.hpp>
#include <cstdlib>

#include <sstream>

#include "coexist/map_store.hpp"
#include "commands.hpp"
#include "commands_scripts.hpp"
#include "fixture.hpp"

using namespace coexist;
using namespace coexist::tool;

TEST_CASE("sh_quote: one word, read back byte for byte") {
    CHECK(sh_quote("ann@contoso.com") == "'ann@contoso.com'");
    CHECK(sh_quote("o'brien@contoso.com") == "'o'\\''brien@contoso.com'");
    CHECK(sh_quote("$(id)`x`|y&z;\"q\"") == "'$(id)`x`|y&z;\"q\"'");
    CHECK(sh_quote("''") == "''\\'''\\'''");
    CHECK(sh_quote("") == "''");
}

TEST_CASE("powershell_quote: single quotes, and the typographic ones PowerShell also takes for quotes") {
    CHECK(powershell_quote("ann@contoso.com") == "'ann@contoso.com'");
    CHECK(powershell_quote("o'brien@contoso.com") == "'o''brien@contoso.com'");
    CHECK(powershell_quote("$env:x`n\"q\"") == "'$env:x`n\"q\"'");
    // U+2018 ‘, U+2019 ’, U+201A ‚, U+201B ‛: each doubled as itself.
    CHECK(powershell_quote("o\u2019brien") == "'o\u2019\u2019brien'");
    CHECK(powershell_quote("\u2018\u201a\u201b") == "'\u2018\u2018\u201a\u201a\u201b\u201b'");
    // Neighbours of the range are ordinary text.
    CHECK(powershell_quote("\u2017\u201c") == "'\u2017\u201c'");
    // A truncated sequence at the end is copied as it is.
    CHECK(powershell_quote(std::string("a\xE2\x80")) == std::string("'a\xE2\x80'"));
}

namespace {

UserRecord record(State state, std::string target, std::string batch) {
    UserRecord r;
    r.state = state;
    r.target = std::move(target);
    r.batch = std::move(batch);
    return r;
}

struct ScriptMap {
    test::TempDir dir;
    Config config = test::standard_config(dir.file("map"));
    MapStore store{config.map_path, config.map_size, MapStore::Mode::create};

    void put(const std::string& key, UserRecord r) {
        store.write({"test", "test", 0}, [&](MapTxn& t) { t.put_user(key, r); });
    }
    std::string run(ScriptSystem system, std::optional<std::string> batch, std::optional<std::string> state = {}) {
        std::ostringstream out;
        commands(config, system, batch, state, out);
        return out.str();
    }
};

}  // namespace

TEST_CASE("commands: a directory-owned user is scripted by its effective state (the override wins)") {
    ScriptMap m;
    UserRecord owned;
    owned.state = State::source;  // the directory's view
    owned.owner = Owner::directory;
    owned.override_state = State::migrated;  // the admin's override
    owned.batch = "wave1";
    owned.dn = "uid=ann,ou=people,dc=contoso,dc=com";
    m.put("ann@contoso.com", owned);
    const auto gam = m.run(ScriptSystem::gam, "wave1");
    CHECK_THAT(gam, Catch::Contains("gam user 'ann@contoso.com' forward on archive 'ann@o365.contoso.com'\n"));
    CHECK_THAT(gam, !Catch::Contains("forward off"));
    CHECK_THAT(m.run(ScriptSystem::exo, "wave1", "migrated"),
               Catch::Contains("Set-Mailbox -Identity 'ann@contoso.com' -EmailAddresses @{Add='smtp:ann@o365.contoso.com'}"));
    CHECK_THROWS_AS(m.run(ScriptSystem::exo, "wave1", "source"), DataError);
}

TEST_CASE("commands: the routing address is route()'s: explicit target, else local@routing_domain of the domain") {
    ScriptMap m;
    m.put("ann@contoso.com", record(State::migrated, "", "w"));
    m.put("bob@fabrikam.com", record(State::dual, "", "w"));
    m.put("jsmith@contoso.com", record(State::migrated, "j.smith@contoso.onmicrosoft.com", "w"));
    const auto gam = m.run(ScriptSystem::gam, "w");
    CHECK_THAT(gam, Catch::Contains("forward on archive 'ann@o365.contoso.com'"));
    CHECK_THAT(gam, Catch::Contains("gam user 'bob@fabrikam.com' forward on keep 'bob@fabrikam.onmicrosoft.com'"));
    CHECK_THAT(gam, Catch::Contains("gam user 'jsmith@contoso.com' add forwardingaddress 'j.smith@contoso.onmicrosoft.com'"));
}

TEST_CASE("commands: a batch scheduled for the weekend is scripted for the state it is heading to") {
    ScriptMap m;
    UserRecord r = record(State::source, "", "wave1");
    r.pending_state = State::migrated;
    r.pending_at = 1796508000;  // 2026-12-05T22:00:00Z
    m.put("ann@contoso.com", r);
    // The script's time (the header's "generated:") decides whether the instant has passed.
    ::setenv("SOURCE_DATE_EPOCH", "1796500000", 1);  // 2026-12-05T19:46:40Z: before it
    const auto gam = m.run(ScriptSystem::gam, "wave1");
    ::setenv("SOURCE_DATE_EPOCH", "1796508001", 1);  // a second after it
    const auto after = m.run(ScriptSystem::gam, "wave1");
    ::unsetenv("SOURCE_DATE_EPOCH");
    CHECK_THAT(gam, Catch::Contains("# ann@contoso.com: migrated (scheduled for 2026-12-05T22:00:00Z)\n"));
    CHECK_THAT(gam, Catch::Contains("# SCHEDULED: 1 of these users change at 2026-12-05T22:00:00Z: run this script "
                                    "at that time, not before\n"));
    CHECK_THAT(gam, Catch::Contains("forward on archive 'ann@o365.contoso.com'"));
    CHECK_THAT(gam, !Catch::Contains("forward off"));
    // Made after the instant, the script says the change is in effect and is to be run now.
    CHECK_THAT(after, Catch::Contains("# ann@contoso.com: migrated (scheduled for 2026-12-05T22:00:00Z, in effect)\n"));
    CHECK_THAT(after, Catch::Contains("# SCHEDULED: 1 of these users changed at 2026-12-05T22:00:00Z, before this "
                                      "script was made: the\n# relays already route them to the new system, so run it now.\n"));
    CHECK_THAT(after, !Catch::Contains("not before"));
    CHECK_THAT(after, Catch::Contains("forward on archive 'ann@o365.contoso.com'"));
}

TEST_CASE("commands: selection errors are data errors naming what") {
    ScriptMap m;
    CHECK_THROWS_WITH(m.run(ScriptSystem::gam, std::nullopt), Catch::Contains("the map has no users"));
    m.put("ann@contoso.com", record(State::migrated, "", "wave1"));
    CHECK_THROWS_WITH(m.run(ScriptSystem::gam, "wave9"), Catch::Contains("unknown batch 'wave9'"));
    CHECK_THROWS_WITH(m.run(ScriptSystem::gam, "wave1", "dual"), Catch::Contains("no user of batch 'wave1' is in state dual"));
    CHECK_THROWS_WITH(m.run(ScriptSystem::gam, "wave1", "gone"), Catch::Contains("unknown state 'gone'"));
    // Without --batch: every user of the map.
    CHECK_THAT(m.run(ScriptSystem::gam, std::nullopt),
               Catch::Contains("# batch: (all); state: migrated and dual; users: 1"));
    // A batch all on source (rolled back) is scripted only when asked for by name.
    m.put("bob@contoso.com", record(State::source, "", "wave2"));
    CHECK_THROWS_WITH(m.run(ScriptSystem::gam, "wave2"), Catch::Contains("'--state source' prints the undo"));
    CHECK_THAT(m.run(ScriptSystem::gam, "wave2", "source"), Catch::Contains("forward off"));
}

TEST_CASE("commands: the header's time is SOURCE_DATE_EPOCH when set, so output can be compared") {
    ScriptMap m;
    m.put("ann@contoso.com", record(State::migrated, "", "wave1"));
    ::setenv("SOURCE_DATE_EPOCH", "1800000000", 1);
    const auto first = m.run(ScriptSystem::exo, "wave1");
    ::unsetenv("SOURCE_DATE_EPOCH");
    CHECK_THAT(first, Catch::Contains("generated: 2027-01-15T08:00:00Z"));
}
