// The directory's view and how it is written into the map (maps/directory: directory_user,
// view_writer): classification of entries, ownership and overrides (design 13.1), the
// safety limit, and order independence (two relays reading the same directory in different
// orders keep the same map). No LDAP server: entries are built by hand.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fmt/format.h>
#include <random>
#include <sstream>

#include "coexist/map_reader.hpp"
#include "coexist/map_store.hpp"
#include "coexist/route.hpp"
#include "commands.hpp"
#include "directory_user.hpp"
#include "fixture.hpp"
#include "key_hash.hpp"
#include "lmdb.hpp"
#include "view_writer.hpp"

using namespace coexist;
using namespace coexist::directory;
using coexist::test::TempDir;

namespace {

const std::string kPeople = "ou=people,dc=contoso,dc=com";

Config directory_config(const std::string& map_path, const std::string& extra = "") {
    return parse_config(coexist::test::standard_config_text(map_path) +
                            "\n[directory]\nuri = ldap://127.0.0.1:1/\nbase = " + kPeople +
                            "\nalias_attributes = mailLocalAddress proxyAddresses\n"
                            "migrated_group = cn=migrated,ou=groups,dc=contoso,dc=com\n"
                            "dual_group = cn=cutover,ou=groups,dc=contoso,dc=com\n" +
                            (extra.find("max_removals") == std::string::npos ? "max_removals = 10%\n" : "") + extra,
                        "test.ini");
}

Entry person(const std::string& uid, std::vector<std::string> mail, std::vector<std::string> aliases = {}) {
    Entry e;
    e.dn = "uid=" + uid + "," + kPeople;
    e.attributes["mail"] = std::move(mail);
    if (!aliases.empty()) e.attributes["maillocaladdress"] = std::move(aliases);
    return e;
}

Membership members(std::vector<std::string> migrated_uids, std::vector<std::string> dual_uids = {}) {
    Membership m;
    std::vector<std::string> migrated, dual;
    for (const auto& u : migrated_uids) migrated.push_back("uid=" + u + "," + kPeople);
    for (const auto& u : dual_uids) dual.push_back("UID=" + u + ", OU=People,dc=contoso,dc=com");  // another spelling
    m.assign(Membership::Group::migrated, migrated);
    m.assign(Membership::Group::dual, dual);
    return m;
}

// Writes a whole view as one full sync; returns the counts.
SyncCounts full(MapStore& store, const Config& c, const std::vector<Entry>& entries, const Membership& m,
                bool force = false) {
    SyncCounts counts;
    store.write(ChangeContext{"test", "sync test", 1000}, [&](MapTxn& t) {
        counts = SyncCounts{};
        ViewWriter w(t, counts);
        for (const auto& e : entries)
            if (auto cl = classify(c, e, m); cl.user) w.upsert(*cl.user);
        w.remove_unseen(c.directory, force);
    });
    return counts;
}

std::string routed(const Config& c, const std::string& address) {
    MapReader reader(c.map_path);
    const auto d = route(c, reader, address);
    return std::string(to_string(d.action)) + (d.address.empty() ? "" : " " + d.address);
}

}  // namespace

TEST_CASE("classify: primary address, aliases, AD prefixes, groups and memberOf") {
    TempDir dir;
    const Config c = directory_config(dir.file("map"));
    Entry ann = person("ann", {"Ann@Contoso.com", "ann.smith@contoso.net"}, {"annie@contoso.com", "x@elsewhere.org"});
    ann.attributes["proxyaddresses"] = {"SMTP:ann@contoso.com", "smtp:a.s@contoso.com", "X500:/o=Org/cn=ann",
                                        "smtp:ann@contoso.onmicrosoft.com"};
    const auto cl = classify(c, ann, members({"ann"}));
    REQUIRE(cl.user);
    CHECK(cl.user->key == "ann@contoso.com");
    CHECK(cl.user->state == State::migrated);
    // contoso.net is an alias domain of contoso.com: ann.smith@contoso.net is ann.smith@contoso.com.
    CHECK(cl.user->aliases == std::vector<std::string>{"a.s@contoso.com", "ann.smith@contoso.com", "annie@contoso.com"});

    CHECK(classify(c, person("bob", {"bob@contoso.com"}), members({"bob"}, {"bob"})).user->state == State::dual);
    CHECK(classify(c, person("cat", {"cat@contoso.com"}), members({})).user->state == State::source);

    Entry dan = person("dan", {"dan@contoso.com"});
    dan.attributes["memberof"] = {"CN=Migrated, OU=Groups, DC=Contoso, DC=Com"};  // AD spells DNs its own way
    CHECK(classify(c, dan, members({})).user->state == State::migrated);

    const auto foreign = classify(c, person("eve", {"eve@elsewhere.org"}), members({}));
    CHECK_FALSE(foreign.user);
    CHECK_THAT(foreign.skipped, Catch::Contains("not in a managed domain"));
    Entry none;
    none.dn = "uid=x," + kPeople;
    CHECK_FALSE(classify(c, none, members({})).user);
}

TEST_CASE("classify: a bad state or target value keeps the map's routing, with a warning") {
    TempDir dir;
    const Config c = parse_config(coexist::test::standard_config_text(dir.file("map")) +
                                      "\n[directory]\nuri = ldap://127.0.0.1:1/\nbase = " + kPeople +
                                      "\nstate_attribute = employeeType\ntarget_attribute = mailRoutingAddress\n",
                                  "test.ini");
    Entry ann = person("ann", {"ann@contoso.com"});
    ann.attributes["employeetype"] = {"migrated"};
    ann.attributes["mailroutingaddress"] = {"ann@contoso.onmicrosoft.com"};
    auto cl = classify(c, ann, {});
    REQUIRE(cl.user);
    CHECK(cl.user->state == State::migrated);
    CHECK(cl.user->target == std::optional<std::string>("ann@contoso.onmicrosoft.com"));
    CHECK_FALSE(cl.user->keep_routing);
    ann.attributes["employeetype"] = {"migratd"};
    cl = classify(c, ann, {});
    CHECK(cl.user->keep_routing);
    CHECK(cl.warnings.size() == 1);
    ann.attributes["employeetype"] = {"dual"};
    ann.attributes["mailroutingaddress"] = {"ann@contoso.com"};  // a managed domain: would loop
    cl = classify(c, ann, {});
    CHECK(cl.user->keep_routing);
}

TEST_CASE("classify: a state, target or batch attribute with values that disagree keeps the map's, with a warning") {
    TempDir dir;
    const Config c = parse_config(coexist::test::standard_config_text(dir.file("map")) +
                                      "\n[directory]\nuri = ldap://127.0.0.1:1/\nbase = " + kPeople +
                                      "\nstate_attribute = employeeType\ntarget_attribute = mailRoutingAddress\n"
                                      "batch_attribute = departmentNumber\n",
                                  "test.ini");
    Entry ann = person("ann", {"ann@contoso.com"});
    // The same state twice, spelt differently: one state, no warning.
    ann.attributes["employeetype"] = {"migrated", "Migrated"};
    ann.attributes["mailroutingaddress"] = {"ann@contoso.onmicrosoft.com", "SMTP:ann@contoso.onmicrosoft.com"};
    ann.attributes["departmentnumber"] = {"wave3"};
    auto cl = classify(c, ann, {});
    REQUIRE(cl.user);
    CHECK(cl.warnings.empty());
    CHECK_FALSE(cl.user->keep_routing);
    CHECK(cl.user->state == State::migrated);
    CHECK(cl.user->target == std::optional<std::string>("ann@contoso.onmicrosoft.com"));
    CHECK(cl.user->batch == std::optional<std::string>("wave3"));

    // Which value comes first is the server's choice: neither may win.
    for (const auto& states : {std::vector<std::string>{"source", "migrated"}, std::vector<std::string>{"migrated", "source"}}) {
        ann.attributes["employeetype"] = states;
        cl = classify(c, ann, {});
        CHECK(cl.user->keep_routing);
        REQUIRE(cl.warnings.size() == 1);
        CHECK(cl.warnings[0] == fmt::format("ann@contoso.com: employeetype has 2 values that disagree ('{}', '{}'): "
                                            "state kept as it is", states[0], states[1]));
    }
    ann.attributes["employeetype"] = {"migrated"};
    ann.attributes["mailroutingaddress"] = {"ann@contoso.onmicrosoft.com", "ann@o365.contoso.com"};
    cl = classify(c, ann, {});
    CHECK(cl.user->keep_routing);
    REQUIRE(cl.warnings.size() == 1);
    CHECK_THAT(cl.warnings[0], Catch::Contains("mailroutingaddress has 2 values that disagree") &&
                                   Catch::EndsWith("routing kept as it is"));
    ann.attributes["mailroutingaddress"] = {"ann@contoso.onmicrosoft.com"};
    ann.attributes["departmentnumber"] = {"wave3", "wave4", "wave5", "wave6"};
    cl = classify(c, ann, {});
    CHECK_FALSE(cl.user->keep_routing);
    CHECK_FALSE(cl.user->batch);  // the map's batch stays
    REQUIRE(cl.warnings.size() == 1);
    CHECK_THAT(cl.warnings[0], Catch::Contains("('wave3', 'wave4', 'wave5' and 1 more): batch kept as it is"));

    // Written: the map keeps the user's routing and batch.
    MapStore store(c.map_path, 1 << 20, MapStore::Mode::create);
    ann.attributes["departmentnumber"] = {"wave3"};
    full(store, c, {ann}, {});
    ann.attributes["employeetype"] = {"source", "migrated"};
    ann.attributes["departmentnumber"] = {"wave3", "wave4"};
    full(store, c, {ann}, {});
    CHECK(routed(c, "ann@contoso.com") == "rewrite ann@contoso.onmicrosoft.com");
    store.read([](MapTxn& t) { CHECK(t.user("ann@contoso.com")->batch == "wave3"); });
}

TEST_CASE("classify: a mail value that is no address is warned of with the entry's DN, not dropped silently") {
    TempDir dir;
    const Config c = directory_config(dir.file("map"));
    const std::string dn = "uid=bad," + kPeople;
    // Each is the only address of its entry: the entry is no user, and the warning says why.
    const auto [value, reason] = GENERATE(table<std::string, std::string>({
        {"not-an-address", "not a valid address"},
        {"ann@contoso.com bob@contoso.com", "not a valid address"},
        {std::string(5000, 'a') + "@contoso.com", "(5012 bytes)"},
    }));
    const auto cl = classify(c, person("bad", {value}), members({}));
    CHECK_FALSE(cl.user);
    REQUIRE(cl.warnings.size() == 1);
    CHECK_THAT(cl.warnings[0], Catch::StartsWith(dn + ": a value of mail ignored: "));
    CHECK_THAT(cl.warnings[0], Catch::Contains(reason));
    CHECK_THAT(cl.warnings[0], Catch::Contains(value.substr(0, 20)));
    CHECK(cl.warnings[0].size() < 600);  // a 5000-byte value is not copied into the log whole

    // A good address beside it still makes the user; the bad value is still said.
    const auto mixed = classify(c, person("bad", {value, "bad@contoso.com"}), members({}));
    REQUIRE(mixed.user);
    CHECK(mixed.user->key == "bad@contoso.com");
    CHECK(mixed.warnings.size() == 1);
}

TEST_CASE("classify: an address of a domain we do not manage is ignored without a warning") {
    TempDir dir;
    const Config c = directory_config(dir.file("map"));
    const auto cl = classify(c, person("eve", {"eve@elsewhere.org", "eve@contoso.com"}), members({}));
    REQUIRE(cl.user);
    CHECK(cl.warnings.empty());
}

TEST_CASE("a full sync adds, changes and removes directory users, and leaves the admin's alone") {
    TempDir dir;
    const Config c = directory_config(dir.file("map"), "max_removals = 5\n");
    MapStore store(c.map_path, 1 << 20, MapStore::Mode::create);
    store.write(ChangeContext{"admin", "set", 1}, [](MapTxn& t) {
        UserRecord r;
        r.state = State::migrated;
        t.put_user("handmade@contoso.com", r);
    });
    std::vector<Entry> view{person("ann", {"ann@contoso.com"}, {"annie@contoso.com"}), person("bob", {"bob@contoso.com"})};
    auto counts = full(store, c, view, members({"ann"}));
    CHECK(counts.added == 2);
    CHECK(counts.aliases_added == 1);
    CHECK(routed(c, "annie@contoso.com") == "rewrite ann@o365.contoso.com");
    CHECK(routed(c, "bob@contoso.com") == "relay");

    view.pop_back();  // bob leaves the directory
    view[0].attributes["maillocaladdress"] = {"ann.s@contoso.com"};
    counts = full(store, c, view, members({}));
    CHECK(counts.removed == 1);
    CHECK(counts.changed == 1);
    CHECK(counts.aliases_added == 1);
    CHECK(counts.aliases_removed == 1);
    CHECK(routed(c, "ann.s@contoso.com") == "relay");
    store.read([](MapTxn& t) {
        CHECK_FALSE(t.user("bob@contoso.com"));
        CHECK_FALSE(t.alias_primary("annie@contoso.com"));
        REQUIRE(t.user("handmade@contoso.com"));  // the admin's user stays (design 13.1)
        CHECK(t.user("handmade@contoso.com")->owner == Owner::admin);
    });
}

TEST_CASE("the safety limit: a sync that would remove too many users changes nothing") {
    TempDir dir;
    const Config c = directory_config(dir.file("map"));  // max_removals = 10%
    MapStore store(c.map_path, 1 << 20, MapStore::Mode::create);
    std::vector<Entry> view;
    for (int i = 0; i < 50; ++i) view.push_back(person(fmt::format("u{:02}", i), {fmt::format("u{:02}@contoso.com", i)}));
    full(store, c, view, members({"u00"}));
    std::vector<Entry> shrunk(view.begin(), view.begin() + 5);  // 90% gone: a wrong filter
    CHECK_THROWS_AS(full(store, c, shrunk, members({})), RemovalLimitExceeded);
    store.read([](MapTxn& t) { CHECK(t.user_count() == 50); });
    CHECK(routed(c, "u00@contoso.com") == "rewrite u00@o365.contoso.com");  // unchanged, group too
    // An emptied migrated group moves its members back to the source: a mass mistake too.
    std::vector<std::string> half;
    for (int i = 0; i < 25; ++i) half.push_back(fmt::format("u{:02}", i));
    full(store, c, view, members(half));
    CHECK(routed(c, "u24@contoso.com") == "rewrite u24@o365.contoso.com");
    try {
        full(store, c, view, members({}));
        FAIL("an emptied group was applied");
    } catch (const RemovalLimitExceeded& e) {
        CHECK(e.would_remove == 0);
        CHECK(e.would_demote == 25);
        CHECK_THAT(e.what(), Catch::Contains("moves 25 back to the source"));
    }
    CHECK(routed(c, "u24@contoso.com") == "rewrite u24@o365.contoso.com");  // nothing changed
    CHECK(full(store, c, view, members({"u00", "u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09",
                                         "u10", "u11", "u12", "u13", "u14", "u15", "u16", "u17", "u18", "u19"}))
              .demoted == 5);  // 5 of 50 = 10%: allowed
    CHECK(full(store, c, view, members({"u00"}), true).demoted == 19);  // --force
    std::vector<Entry> few_gone(view.begin(), view.begin() + 45);  // 5 of 50 = 10%: allowed
    CHECK(full(store, c, few_gone, members({"u00"})).removed == 5);
    CHECK(full(store, c, shrunk, members({}), true).removed == 40);  // --force
}

TEST_CASE("the safety limit: an entry that gives another primary address now is no user gone") {
    TempDir dir;
    const Config c = directory_config(dir.file("map"));  // max_removals = 10%
    MapStore store(c.map_path, 1 << 20, MapStore::Mode::create);
    const bool by_uuid = GENERATE(true, false);  // OpenLDAP's entryUUID; a directory without one (DN)
    std::vector<Entry> view;
    std::vector<std::string> migrated;
    for (int i = 0; i < 50; ++i) {
        view.push_back(person(fmt::format("u{:02}", i), {fmt::format("u{:02}@contoso.com", i)}));
        if (by_uuid) view.back().attributes["entryuuid"] = {fmt::format("1b4f0f7e-0000-0000-0000-0000000000{:02}", i)};
        if (i % 2 == 0) migrated.push_back(fmt::format("u{:02}", i));
    }
    full(store, c, view, members(migrated));
    // 20 of 50 renamed (a new domain policy, first.last): 40% would be "gone" by key.
    auto renamed = view;
    for (int i = 0; i < 20; ++i) {
        renamed[i].attributes["mail"] = {fmt::format("user.{:02}@contoso.com", i), fmt::format("u{:02}@contoso.com", i)};
        if (!by_uuid) continue;
        renamed[i].dn = fmt::format("uid=user.{:02},{}", i, kPeople);  // modrdn too: the entryUUID stays
        if (i % 2 == 0) migrated[i / 2] = fmt::format("user.{:02}", i);
    }
    if (by_uuid) renamed.push_back(person("new", {"new@contoso.com"}));  // and one more change in the same pass
    const auto counts = full(store, c, renamed, members(migrated));
    CHECK(counts.removed == 20);
    CHECK(counts.renamed == 20);
    CHECK(counts.added == (by_uuid ? 21 : 20));
    CHECK(routed(c, "user.00@contoso.com") == "rewrite user.00@o365.contoso.com");
    CHECK(routed(c, "u00@contoso.com") == "rewrite user.00@o365.contoso.com");  // the old address: an alias now
    CHECK(routed(c, "user.01@contoso.com") == "relay");
    if (by_uuid) CHECK(routed(c, "new@contoso.com") == "relay");

    // Still counted: users gone, and a rename that also moves the user back to the source.
    auto gone = renamed;
    gone.erase(gone.begin() + 40, gone.begin() + 50);  // 10 of 50 (u40..u49) leave: over 10%
    CHECK_THROWS_AS(full(store, c, gone, members(migrated)), RemovalLimitExceeded);
    auto demoted = renamed;
    for (int i = 0; i < 12; i += 2) {
        demoted[i].attributes["mail"] = {fmt::format("first.{:02}@contoso.com", i)};
    }
    std::vector<std::string> fewer(migrated.begin() + 6, migrated.end());  // and out of the group
    try {
        full(store, c, demoted, members(fewer));
        FAIL("renames that moved 6 users back to the source were not counted");
    } catch (const RemovalLimitExceeded& e) {
        CHECK(e.would_remove == 6);
    }
    CHECK(routed(c, "user.00@contoso.com") == "rewrite user.00@o365.contoso.com");
}

TEST_CASE("the safety limit: addresses exchanged or passed on are no removals; its base is the users before the pass") {
    TempDir dir;
    const Config c = directory_config(dir.file("map"), "max_removals = 0\n");
    MapStore store(c.map_path, 1 << 20, MapStore::Mode::create);
    std::vector<Entry> view;
    for (int i = 0; i < 10; ++i) {
        view.push_back(person(fmt::format("u{:02}", i), {fmt::format("u{:02}@contoso.com", i)}));
        view.back().attributes["entryuuid"] = {fmt::format("1b4f0f7e-0000-0000-0000-0000000000{:02}", i)};
    }
    full(store, c, view, members({"u00", "u02"}));
    // u00 (migrated) and u01 (source) exchange addresses; u03 takes u02's address, which moves
    // to a new one. max_removals = 0: nothing may count.
    view[0].attributes["mail"] = {"u01@contoso.com"};
    view[1].attributes["mail"] = {"u00@contoso.com"};
    view[2].attributes["mail"] = {"new02@contoso.com"};
    view[3].attributes["mail"] = {"u02@contoso.com"};
    const auto counts = full(store, c, view, members({"u00", "u02"}));
    CHECK(counts.demoted == 0);
    CHECK(counts.removed == 1);  // u03@: its entry gives u02@ now
    CHECK(counts.renamed == 1);
    CHECK(routed(c, "u01@contoso.com") == "rewrite u01@o365.contoso.com");  // the migrated entry's now
    CHECK(routed(c, "u00@contoso.com") == "relay");
    CHECK(routed(c, "new02@contoso.com") == "rewrite new02@o365.contoso.com");
    CHECK(routed(c, "u02@contoso.com") == "relay");

    // 30 users at 10% allow 3: 20 renamed and 4 gone is 4 gone, held (the 20 new keys counted in
    // the base made the limit 5).
    TempDir dir2;
    const Config c2 = directory_config(dir2.file("map"));
    MapStore store2(c2.map_path, 1 << 20, MapStore::Mode::create);
    std::vector<Entry> thirty;
    for (int i = 0; i < 30; ++i) thirty.push_back(person(fmt::format("v{:02}", i), {fmt::format("v{:02}@contoso.com", i)}));
    full(store2, c2, thirty, members({}));
    auto changed = thirty;
    for (int i = 0; i < 20; ++i) changed[i].attributes["mail"] = {fmt::format("w{:02}@contoso.com", i)};
    changed.resize(26);
    try {
        full(store2, c2, changed, members({}));
        FAIL("4 of 30 removed with max_removals = 10%");
    } catch (const RemovalLimitExceeded& e) {
        CHECK(e.would_remove == 4);
        CHECK(e.limit == 3);
        CHECK(e.owned == 30);
    }
}

TEST_CASE("a new user whose routing cannot be read goes to the source, not to the first value sent") {
    TempDir dir;
    const Config c = parse_config(coexist::test::standard_config_text(dir.file("map")) +
                                      "\n[directory]\nuri = ldap://127.0.0.1:1/\nbase = " + kPeople +
                                      "\nstate_attribute = employeeType\ntarget_attribute = labeledURI\n",
                                  "test.ini");
    MapStore store(c.map_path, 1 << 20, MapStore::Mode::create);
    Entry newbie = person("newbie", {"newbie@contoso.com"});
    newbie.attributes["employeetype"] = {"migrated"};
    newbie.attributes["labeleduri"] = {"b@elsewhere.example", "a@elsewhere.example"};
    Entry dora = person("dora", {"dora@contoso.com"});
    dora.attributes["employeetype"] = {"migrated", "source"};
    // One mailbox in two spellings is one target, the same whatever the order.
    Entry tom = person("tom", {"tom@contoso.com"});
    tom.attributes["employeetype"] = {"migrated"};
    for (const auto& order : {std::vector<std::string>{"t4@elsewhere.example", "T4@Elsewhere.Example"},
                              std::vector<std::string>{"T4@Elsewhere.Example", "t4@elsewhere.example"}}) {
        tom.attributes["labeleduri"] = order;
        const auto cl = classify(c, tom, {});
        CHECK(cl.warnings.empty());
        CHECK(cl.user->target == std::optional<std::string>("T4@elsewhere.example"));
    }
    full(store, c, {newbie, dora, tom}, {});
    CHECK(routed(c, "newbie@contoso.com") == "relay");
    CHECK(routed(c, "dora@contoso.com") == "relay");
    CHECK(routed(c, "tom@contoso.com") == "rewrite T4@elsewhere.example");
}

TEST_CASE("an admin's change to a directory user is an override the sync keeps, until the directory catches up") {
    TempDir dir;
    const Config c = directory_config(dir.file("map"));
    MapStore store(c.map_path, 1 << 20, MapStore::Mode::create);
    const std::vector<Entry> view{person("ann", {"ann@contoso.com"})};
    full(store, c, view, members({}));
    std::ostringstream out;
    tool::set(c, "ann@contoso.com", std::optional<std::string>("migrated"), std::nullopt, std::nullopt, false, std::nullopt, out);
    CHECK(routed(c, "ann@contoso.com") == "rewrite ann@o365.contoso.com");
    auto counts = full(store, c, view, members({}));
    CHECK(counts.overrides == 1);
    CHECK(routed(c, "ann@contoso.com") == "rewrite ann@o365.contoso.com");  // kept, not silently undone
    counts = full(store, c, view, members({"ann"}));                        // the directory catches up
    CHECK(counts.overrides_dropped == 1);
    store.read([](MapTxn& t) {
        CHECK_FALSE(t.user("ann@contoso.com")->override_state);
        const auto h = t.history("ann@contoso.com");
        CHECK(std::any_of(h.begin(), h.end(), [](const AuditEntry& e) { return e.new_value.find("caught up") != std::string::npos; }));
    });
    // Refused: changes that the next sync would undo.
    CHECK_THROWS_AS(tool::remove(c, "ann@contoso.com", out), tool::DataError);
    CHECK_THROWS_AS(tool::alias(c, "a@contoso.com", "ann@contoso.com", out), tool::DataError);
    // A user set by hand before the directory took it over keeps the hand-set state as an override.
    tool::set(c, "bob@contoso.com", "dual", std::nullopt, std::nullopt, out);
    full(store, c, {person("ann", {"ann@contoso.com"}), person("bob", {"bob@contoso.com"})}, members({"ann"}));
    store.read([](MapTxn& t) {
        const auto bob = t.user("bob@contoso.com");
        CHECK(bob->owner == Owner::directory);
        CHECK(bob->override_state == State::dual);
    });
    tool::set(c, "bob@contoso.com", std::nullopt, std::nullopt, std::nullopt, true, std::nullopt, out);  // --clear-override
    CHECK(routed(c, "bob@contoso.com") == "relay");
}

TEST_CASE("Hash128Set and Membership: membership by hash, as a multiset of DN spellings") {
    Hash128Set set;
    for (int i = 0; i < 100000; ++i) CHECK(set.insert(hash128(fmt::format("user{}@contoso.com", i))));
    CHECK_FALSE(set.insert(hash128("user7@contoso.com")));
    CHECK(set.size() == 100000);
    CHECK(set.contains(hash128("user99999@contoso.com")));
    CHECK_FALSE(set.contains(hash128("user100000@contoso.com")));
    Membership m;
    m.assign(Membership::Group::migrated, {"uid=ann," + kPeople, "UID=Ann, " + kPeople});
    CHECK(m.contains(Membership::Group::migrated, normalize_dn("uid=ann," + kPeople)));
    const auto before = m.fingerprint();
    m.remove(Membership::Group::migrated, "uid=ann," + kPeople);  // one spelling left
    CHECK(m.contains(Membership::Group::migrated, normalize_dn("uid=ann," + kPeople)));
    CHECK(m.fingerprint() != before);
    m.remove(Membership::Group::migrated, "UID=Ann, " + kPeople);
    CHECK_FALSE(m.contains(Membership::Group::migrated, normalize_dn("uid=ann," + kPeople)));
    m.add(Membership::Group::dual, "uid=bob," + kPeople);
    CHECK(m.contains(Membership::Group::dual, normalize_dn("uid=bob," + kPeople)));
    CHECK_FALSE(m.contains(Membership::Group::migrated, normalize_dn("uid=bob," + kPeople)));
}

TEST_CASE("conflicts resolve the same way whatever order the directory sends entries in") {
    std::vector<Entry> view{
        person("ann", {"ann@contoso.com"}, {"shared@contoso.com"}),
        person("ann2", {"ann@contoso.com"}),  // the same address twice: the smaller DN keeps it
        person("bob", {"bob@contoso.com"}, {"shared@contoso.com", "ann@contoso.com"}),
        person("cat", {"cat@contoso.com"}),
    };
    std::string first_digest;
    std::mt19937 rng(42);
    for (int round = 0; round < 6; ++round) {
        std::shuffle(view.begin(), view.end(), rng);
        TempDir dir;
        const Config c = directory_config(dir.file("map"));
        MapStore store(c.map_path, 1 << 20, MapStore::Mode::create);
        full(store, c, view, members({"ann2"}));
        std::ostringstream digest;
        tool::digest(c, digest);
        if (round == 0) first_digest = digest.str();
        CHECK(digest.str() == first_digest);
        store.read([](MapTxn& t) {
            CHECK(t.user("ann@contoso.com")->dn == normalize_dn("uid=ann," + kPeople));
            CHECK(t.alias_primary("shared@contoso.com") == std::optional<std::string>("ann@contoso.com"));
        });
    }
}

TEST_CASE("a user's address that leaves the map goes back to the users listing it as an alias") {
    TempDir dir;
    const Config c = directory_config(dir.file("map"));
    MapStore store(c.map_path, 1 << 20, MapStore::Mode::create);
    const Entry taker = person("taker", {"shared@contoso.com"});
    const std::vector<Entry> listing{person("bob", {"bob@contoso.com"}, {"shared@contoso.com"}),
                                     person("ann", {"ann@contoso.com"}, {"shared@contoso.com"})};
    std::vector<Entry> view = listing;
    view.push_back(taker);
    full(store, c, view, members({}));
    store.read([](MapTxn& t) {
        CHECK(t.user("shared@contoso.com"));
        CHECK_FALSE(t.alias_primary("shared@contoso.com"));
    });

    SECTION("a full sync: in the same pass that removes the user (not the next one), to the smallest key") {
        const SyncCounts counts = full(store, c, listing, members({}));
        CHECK(counts.removed == 1);
        CHECK(counts.aliases_added == 1);
        store.read([](MapTxn& t) {
            CHECK_FALSE(t.user("shared@contoso.com"));
            CHECK(t.alias_primary("shared@contoso.com") == std::optional<std::string>("ann@contoso.com"));
        });
        // Nothing left to do (read in key order: a full sync reading the bigger key first moves
        // the alias to it and back within the pass, counted twice).
        CHECK(full(store, c, {listing[1], listing[0]}, members({})).aliases_added == 0);
    }
    SECTION("the follower: to the user its view of the directory gives it to") {
        store.write(ChangeContext{"test", "sync test", 1000}, [&](MapTxn& t) {
            SyncCounts counts;
            ViewWriter w(t, counts);
            w.set_alias_owner([](std::string_view) { return std::optional<std::string>("bob@contoso.com"); });
            CHECK(w.remove("shared@contoso.com"));
        });
        store.read([](MapTxn& t) {
            CHECK(t.alias_primary("shared@contoso.com") == std::optional<std::string>("bob@contoso.com"));
        });
    }
}

TEST_CASE("an alias a directory user lists, hidden by a hand-set user's address, is its alias once that user goes") {
    // The map keeps the admin's user (design 13.1) and records who lists its address; whoever
    // removes that user gives the address to the smallest key listing it, in the same
    // transaction, as a full sync would. It was nobody's until the next full sync: an unknown
    // user, relayed to the old system or refused, for days under a follower.
    TempDir dir;
    const Config c = directory_config(dir.file("map"));
    MapStore store(c.map_path, 1 << 20, MapStore::Mode::create);
    std::ostringstream out;
    tool::set(c, "shared@contoso.com", "dual", std::nullopt, std::nullopt, out);
    const std::vector<Entry> view{person("bob", {"bob@contoso.com"}, {"shared@contoso.com"}),
                                  person("ann", {"ann@contoso.com"}, {"shared@contoso.com", "annie@contoso.com"})};
    CHECK(full(store, c, view, members({"ann"})).conflicts == 2);
    CHECK(routed(c, "shared@contoso.com") == "dual shared@o365.contoso.com");  // the hand-set user's
    store.read([](MapTxn& t) {
        CHECK(t.hidden_aliases_of("ann@contoso.com") == std::vector<std::string>{"shared@contoso.com"});
        CHECK(t.hidden_alias_owner("shared@contoso.com") == std::optional<std::string>("ann@contoso.com"));
    });

    SECTION("coexist-map remove: to the smallest key listing it, at once; the next sync has nothing to do") {
        std::ostringstream removed;
        tool::remove(c, "shared@contoso.com", removed);
        CHECK(removed.str() == "shared@contoso.com: removed\n"
                               "shared@contoso.com: alias of ann@contoso.com (the directory lists it)\n");
        CHECK(routed(c, "shared@contoso.com") == "rewrite ann@o365.contoso.com");
        store.read([](MapTxn& t) {
            CHECK(t.hidden_aliases_of("ann@contoso.com").empty());
            CHECK(t.hidden_aliases_of("bob@contoso.com").empty());
            const auto h = t.history("shared@contoso.com");
            REQUIRE(h.size() >= 2);
            CHECK(h.back().new_value == "alias of ann@contoso.com");
            CHECK(h.back().command == "remove");
        });
        // Read in key order (in the other, a full sync moves an alias two users list to the
        // bigger key and back within the pass, counted twice).
        const SyncCounts again = full(store, c, {view[1], view[0]}, members({"ann"}));
        CHECK(again.aliases_added + again.aliases_removed == 0);
    }
    SECTION("a user that no longer lists it, or left the directory, is not given it") {
        full(store, c, {person("bob", {"bob@contoso.com"}, {"shared@contoso.com"}), person("ann", {"ann@contoso.com"})},
             members({"ann"}));
        SECTION("the next smallest key listing it gets it") {
            tool::remove(c, "shared@contoso.com", out);
            CHECK(routed(c, "shared@contoso.com") == "relay");  // bob, a source user
            store.read([](MapTxn& t) {
                CHECK(t.alias_primary("shared@contoso.com") == std::optional<std::string>("bob@contoso.com"));
            });
        }
        SECTION("nobody lists it any more: nobody's") {
            full(store, c, {person("ann", {"ann@contoso.com"})}, members({"ann"}));  // bob left
            store.read([](MapTxn& t) { CHECK_FALSE(t.hidden_alias_owner("shared@contoso.com")); });
            tool::remove(c, "shared@contoso.com", out);
            store.read([](MapTxn& t) { CHECK_FALSE(t.alias_primary("shared@contoso.com")); });
        }
    }
    SECTION("import --prune: the same, said in the diff; a row cannot take it for another hand-set user") {
        tool::set(c, "keep@contoso.com", "source", std::nullopt, std::nullopt, out);
        const std::string taking = dir.write("taking.csv", "address,state,aliases\nkeep@contoso.com,source,shared@contoso.com\n");
        tool::ImportOptions prune;
        prune.prune = true;
        std::ostringstream err;
        CHECK_THROWS_WITH(tool::import_csv(c, taking, prune, out, err),
                          Catch::Contains("alias shared@contoso.com is listed by ann@contoso.com in the directory"));
        const std::string keep = dir.write("keep.csv", "address,state\nkeep@contoso.com,source\n");
        std::ostringstream pruned;
        REQUIRE(tool::import_csv(c, keep, prune, pruned, err) == 0);
        CHECK_THAT(pruned.str(), Catch::Contains("alias shared@contoso.com -> ann@contoso.com (the directory lists it)"));
        CHECK(routed(c, "shared@contoso.com") == "rewrite ann@o365.contoso.com");
    }
    SECTION("the directory takes the hand-set user over, then it leaves: the follower gives it as the map records") {
        // A follower resumed from its cookie knows of the listing from the map only.
        std::vector<Entry> taken = view;
        taken.push_back(person("shared", {"shared@contoso.com"}));
        full(store, c, taken, members({"ann"}));
        store.write(ChangeContext{"test", "sync test", 1000}, [&](MapTxn& t) {
            SyncCounts counts;
            std::vector<std::string> changes;
            ViewWriter w(t, counts, [&](const std::string& line) { changes.push_back(line); });
            w.set_alias_owner([](std::string_view) { return std::nullopt; });
            CHECK(w.remove("shared@contoso.com"));
            CHECK(counts.aliases_added == 1);
            CHECK(changes == std::vector<std::string>{"alias shared@contoso.com -> ann@contoso.com",
                                                      "remove shared@contoso.com"});
        });
        CHECK(routed(c, "shared@contoso.com") == "rewrite ann@o365.contoso.com");
    }
    SECTION("coexist-map alias cannot take a directory user's alias for a hand-set user") {
        tool::set(c, "hand@contoso.com", "source", std::nullopt, std::nullopt, out);
        CHECK_THROWS_WITH(tool::alias(c, "annie@contoso.com", "hand@contoso.com", out),
                          Catch::Contains("annie@contoso.com is an alias of ann@contoso.com, owned by the directory"));
        CHECK(routed(c, "annie@contoso.com") == "rewrite ann@o365.contoso.com");
    }
    SECTION("dump and restore keep who lists it") {
        std::ostringstream dumped;
        tool::dump(c, dumped);
        CHECK_THAT(dumped.str(), Catch::Contains("\"hidden_aliases\":[\"shared@contoso.com\"]"));
        TempDir other;
        const Config c2 = directory_config(other.file("map"));
        const std::string file = other.write("dump.jsonl", dumped.str());
        tool::restore(c2, file, false, out);
        tool::remove(c2, "shared@contoso.com", out);
        CHECK(routed(c2, "shared@contoso.com") == "rewrite ann@o365.contoso.com");
    }
}

TEST_CASE("a map written before hidden aliases is read as it is, and its first writer adds them") {
    TempDir dir;
    const Config c = directory_config(dir.file("map"));
    { MapStore store(c.map_path, 1 << 20, MapStore::Mode::create); }
    {
        // What an earlier coexist-map left: no hidden_aliases database.
        Environment env(c.map_path, 0, 0);
        Transaction txn(env, Transaction::Mode::write);
        check_mdb(mdb_drop(txn.get(), txn.open_db("hidden_aliases"), 1), "mdb_drop");
        txn.commit();
    }
    {
        MapStore reader(c.map_path, 1 << 20, MapStore::Mode::read_only);
        reader.read([](MapTxn& t) {
            CHECK(t.hidden_aliases_of("ann@contoso.com").empty());
            CHECK_FALSE(t.hidden_alias_owner("shared@contoso.com"));
        });
    }
    std::ostringstream out;
    tool::set(c, "shared@contoso.com", "dual", std::nullopt, std::nullopt, out);
    MapStore store(c.map_path, 1 << 20, MapStore::Mode::read_write);
    full(store, c, {person("ann", {"ann@contoso.com"}, {"shared@contoso.com"})}, members({"ann"}));
    tool::remove(c, "shared@contoso.com", out);
    CHECK(routed(c, "shared@contoso.com") == "rewrite ann@o365.contoso.com");
}
