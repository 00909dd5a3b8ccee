// coexist-map import takes the files admins have and runs a batch's life (issue 12, design 10 and
// 13.4): Microsoft's migration batch CSV (EmailAddress), GAM's `print users` (primaryEmail and
// many other columns), capitalised headers; unknown columns ignored and named once; every bad
// row reported in one run with the map unchanged; --prune (within --batch) never touching
// directory-owned users; --dry-run showing every change, alias removals included.
// The sample files are in tests/core/data/import/.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <sstream>
#include <string>

#include "coexist/map_store.hpp"
#include "commands.hpp"
#include "fixture.hpp"

using namespace coexist;

namespace {

const std::string kData = std::string(COEXIST_TEST_DATA_DIR) + "/import/";

struct BatchMap {
    test::TempDir dir;
    Config config;
    std::string config_file;
    BatchMap() : config(test::standard_config(dir.file("map"))) {
        config_file = dir.write("coexist.ini", test::standard_config_text(dir.file("map")));
        std::ostringstream out;
        tool::init(config, out);
    }
    struct Result {
        std::string out, err, error;  // error: the DataError's text, "" on success
    };
    Result import(const std::string& file, tool::ImportOptions options = {}) {
        Result r;
        std::ostringstream out, err;
        try {
            tool::import_csv(config, file, options, out, err);
        } catch (const tool::DataError& e) {
            r.error = e.what();
        }
        r.out = out.str();
        r.err = err.str();
        return r;
    }
    Result import_text(const std::string& csv, tool::ImportOptions options = {}) {
        return import(dir.write("in.csv", csv), std::move(options));
    }
    std::string export_text() {
        std::ostringstream out;
        tool::export_csv(config, out);
        return out.str();
    }
    // A user the directory owns (design 13.1), as `sync` writes it.
    void put_directory_user(const std::string& key, State state, const std::string& batch) {
        MapStore store(config.map_path, config.map_size, MapStore::Mode::read_write);
        store.write(ChangeContext{"test", "sync", 1}, [&](MapTxn& t) {
            UserRecord r;
            r.state = state;
            r.batch = batch;
            r.owner = Owner::directory;
            r.dn = "uid=" + key.substr(0, key.find('@')) + ",ou=people,dc=contoso,dc=com";
            t.put_user(key, r);
        });
    }
    std::vector<AuditEntry> history(const std::string& key) {
        MapStore store(config.map_path, config.map_size, MapStore::Mode::read_only);
        std::vector<AuditEntry> out;
        store.read([&](MapTxn& t) { out = t.history(key); });
        return out;
    }
};

tool::ImportOptions opts(std::optional<std::string> batch, bool dry_run, bool prune) {
    tool::ImportOptions o;
    o.batch = std::move(batch);
    o.dry_run = dry_run;
    o.prune = prune;
    return o;
}

const std::string kBase =
    "address,state,target,batch,aliases\n"
    "ann@contoso.com,migrated,,wave1,anna@contoso.com;a.lee@contoso.com\n"
    "bob@contoso.com,source,,wave2,\n";

}  // namespace

TEST_CASE("Microsoft's migration batch CSV (EmailAddress only) imports: state migrated, batch from --batch") {
    BatchMap m;
    const auto r = m.import(kData + "microsoft-batch.csv", opts(std::string("wave1"), false, false));
    REQUIRE(r.error == "");
    CHECK(r.err == "");
    CHECK(m.export_text() ==
          "address,state,target,batch,aliases\n"
          "ann@contoso.com,migrated,,wave1,\n"
          "bob@contoso.com,migrated,,wave1,\n"
          "erin@fabrikam.com,migrated,,wave1,\n");
    CHECK_THAT(r.out, Catch::EndsWith(": 3 added, 0 changed, 0 unchanged, 0 removed; aliases +0 -0\n"));
}

TEST_CASE("an IMAP migration batch: UserName and Password are ignored, named once on stderr") {
    BatchMap m;
    const auto r = m.import(kData + "microsoft-imap-batch.csv");
    REQUIRE(r.error == "");
    CHECK(r.err == "coexist-map: " + kData +
                       "microsoft-imap-batch.csv:1: ignoring 2 columns (not address, state, target, batch or "
                       "aliases): UserName, Password\n");
    CHECK(m.export_text() == "address,state,target,batch,aliases\n"
                             "ann@contoso.com,migrated,,,\nbob@contoso.com,migrated,,,\n");
}

TEST_CASE("GAM's print users (primaryEmail and other columns) imports; the others are named in one line") {
    BatchMap m;
    m.import_text(kBase);
    const auto r = m.import(kData + "gam-print-users.csv", opts(std::string("wave3"), false, false));
    REQUIRE(r.error == "");
    CHECK(r.err == "coexist-map: " + kData +
                       "gam-print-users.csv:1: ignoring 5 columns (not address, state, target, batch or aliases): "
                       "name.givenName, name.familyName, name.fullName, orgUnitPath, suspended\n");
    // No aliases column: ann keeps her aliases.
    CHECK(m.export_text() ==
          "address,state,target,batch,aliases\n"
          "ann@contoso.com,migrated,,wave3,a.lee@contoso.com;anna@contoso.com\n"
          "bob@contoso.com,source,,wave2,\n"
          "carol@contoso.com,migrated,,wave3,\n"
          "jsmith@contoso.com,migrated,,wave3,\n");
}

TEST_CASE("header names in any case: Address, State, Batch as a spreadsheet titles them") {
    BatchMap m;
    REQUIRE(m.import(kData + "capitals.csv").error == "");
    CHECK(m.export_text() ==
          "address,state,target,batch,aliases\n"
          "ann@contoso.com,dual,,Wave1,anna@contoso.com\n"
          "bob@contoso.com,migrated,bob@contoso.onmicrosoft.com,Wave1,\n");
}

TEST_CASE("two columns that are both the address (or both any field) are an error naming them") {
    BatchMap m;
    struct Case {
        std::string csv, error;
    };
    const Case c = GENERATE(values<Case>({
        {"EmailAddress,name,primaryEmail\nann@contoso.com,Ann,ann@contoso.com\n",
         "in.csv:1: columns 'EmailAddress' (1) and 'primaryEmail' (3) are both the address: keep one"},
        {"mail,Address\nann@contoso.com,ann@contoso.com\n", "columns 'mail' (1) and 'Address' (2) are both the address"},
        {"address,State,state\nann@contoso.com,dual,source\n", "columns 'State' (2) and 'state' (3) are both the state"},
        {"name,orgUnitPath\nAnn,/\n", "in.csv:1: no 'address' column (also read as EmailAddress, primaryEmail or mail)"},
        // A misspelt field would be ignored and change what routes: refused, naming it.
        {"address,Status\nann@contoso.com,source\n",
         "in.csv:1: column 'Status' is not read: rename it 'state' if that is what it holds, or remove it"},
        {"address,stat\nann@contoso.com,source\n", "column 'stat' is not read: rename it 'state'"},
        {"address,Alias\nann@contoso.com,a@contoso.com\n", "column 'Alias' is not read: rename it 'aliases'"},
        {"address,tagret\nann@contoso.com,a@x.org\n", "column 'tagret' is not read: rename it 'target'"},
        // Other names for the fields that route, as other tools write them.
        {"EmailAddress,MigrationState\nann@contoso.com,source\n", "column 'MigrationState' is not read: rename it 'state'"},
        {"address,Migration State\nann@contoso.com,source\n", "column 'Migration State' is not read: rename it 'state'"},
        {"address,routing_state\nann@contoso.com,source\n", "column 'routing_state' is not read: rename it 'state'"},
        {"address,Status2\nann@contoso.com,source\n", "column 'Status2' is not read: rename it 'state'"},
        {"address,Target Address\nann@contoso.com,a@x.org\n", "column 'Target Address' is not read: rename it 'target'"},
        {"address,targetAddress\nann@contoso.com,a@x.org\n", "column 'targetAddress' is not read: rename it 'target'"},
        {"address,ForwardingAddress\nann@contoso.com,a@x.org\n", "column 'ForwardingAddress' is not read: rename it 'target'"},
        {"primaryEmail,aliases.0,aliases.1\nann@contoso.com,a1@contoso.com,a2@contoso.com\n",
         "column 'aliases.0' is not read: rename it 'aliases' if that is what it holds (all of a user's aliases in one "
         "cell, separated by ';'), or remove it"},
        {"adress,state\nann@contoso.com,source\n", "no 'address' column"},
    }));
    CAPTURE(c.csv);
    const auto r = m.import_text(c.csv);
    CHECK_THAT(r.error, Catch::Contains(c.error));
    CHECK(m.export_text() == "address,state,target,batch,aliases\n");
}

TEST_CASE("a file with 7 bad rows reports all 7 in one run, in line order, and changes nothing") {
    BatchMap m;
    m.import_text(kBase);
    const std::string before = m.export_text();
    const std::string f = kData + "seven-bad-rows.csv";
    const auto r = m.import(f);
    CHECK(r.error == f + ":3: 'not an address' is not a valid address\n" +
                         f + ":5: 'stranger@example.org' is not in a managed domain\n" +
                         f + ":6: unknown state 'finished' (expected source, migrated or dual)\n" +
                         f + ":7: target 'loop@contoso.net' is in a managed domain: mail would loop\n" +
                         f + ":8: good1@contoso.com is listed twice (first on line 2)\n" +
                         f + ":9: alias bob@contoso.com is a user in the map\n" +
                         f + ":10: anna@contoso.com is an alias of ann@contoso.com in the map\n" +
                         f + ": 7 bad rows, nothing imported");
    CHECK(m.export_text() == before);
    // --dry-run reports the same rows and prints no diff.
    const auto dry = m.import(f, opts(std::nullopt, true, false));
    CHECK(dry.error == r.error);
    CHECK(dry.out == "");
}

TEST_CASE("empty state cells in a file with a state column take migrated, with one warning naming them") {
    BatchMap m;
    std::string csv = "address,state\nann@contoso.com,dual\n";
    for (int i = 0; i < 7; ++i) csv += "u" + std::to_string(i) + "@contoso.com,\n";  // lines 3 to 9
    const auto r = m.import_text(csv);
    REQUIRE(r.error == "");
    CHECK(r.err == "coexist-map: " + m.dir.file("in.csv") +
                       ": 7 rows with an empty state cell take migrated (lines 3, 4, 5, 6, 7, ...); "
                       "write the state, or give --state for the rows without one\n");
    CHECK_THAT(m.export_text(), Catch::Contains("u6@contoso.com,migrated,"));
    // --state says it for them: no warning. Neither without a state column (the default is meant).
    tool::ImportOptions given;
    given.state = "source";
    const auto with_state = m.import_text("address,state\nu0@contoso.com,\n", given);
    CHECK(with_state.err == "");
    CHECK_THAT(m.export_text(), Catch::Contains("u0@contoso.com,source,"));
    CHECK(m.import_text("address\nu1@contoso.com\n").err == "");
    // Only rows the import takes are counted, and only an import that succeeds warns.
    const auto counted = m.import_text("address,state\nnot an address,\nu2@contoso.com,\nu2@contoso.com,\n"
                                       "u3@contoso.com,\n");
    CHECK(counted.error != "");
    CHECK(counted.err == "");
    const auto good = m.import_text("address,state\nnot-managed@example.org,dual\nu4@contoso.com,\n",
                                    opts(std::nullopt, true, false));  // --dry-run: what it would take
    CHECK(good.error != "");
    CHECK(good.err == "");
    const auto dry = m.import_text("address,state\nu4@contoso.com,\nu5@contoso.com,source\n",
                                   opts(std::nullopt, true, false));
    REQUIRE(dry.error == "");
    CHECK(dry.err == "coexist-map: " + m.dir.file("in.csv") +
                         ": 1 row with an empty state cell takes migrated (line 2); "
                         "write the state, or give --state for the rows without one\n");
}

TEST_CASE("a cell quoted in an import error cannot make another line, and a long one is cut") {
    BatchMap m;
    const std::string f = m.dir.write("forged.csv", "address,state\n"
                                                     "a@contoso.com,\"mig\nforged.csv:99: forged \x1b[31mRED\"\n"
                                                     "b@contoso.com," + std::string(5000, 'y') + "\n");
    const auto r = m.import(f);
    CHECK(r.error == f + ":2: unknown state 'mig?forged.csv:99: forged ?[31mRED' (expected source, migrated or dual)\n" +
                         f + ":4: unknown state '" + std::string(1024 - 15, 'y') + "...\n" +
                         f + ": 2 bad rows, nothing imported");
}

TEST_CASE("a stray quote names its row and the rows after it are still checked; an unclosed one ends the reading") {
    BatchMap m;
    m.import_text(kBase);
    const std::string before = m.export_text();
    const std::string f = m.dir.write("quotes.csv",
                                      "address,state\n"
                                      "good@contoso.com,migrated\n"
                                      "o\"brien@contoso.com,migrated\n"   // Excel leaves such a quote bare
                                      "\"x@contoso.com\"y,dual\n"          // text after a closing quote
                                      "late@contoso.com,finished\n"        // checked all the same
                                      "\"open@contoso.com,dual\n"          // no closing quote: the end
                                      "unseen@example.org\n");
    const auto r = m.import(f);
    CHECK(r.error == f + ":3: quote inside an unquoted field\n" +
                         f + ":4: text after a closing quote\n" +
                         f + ":5: unknown state 'finished' (expected source, migrated or dual)\n" +
                         f + ":6: quoted field not closed; the rows after it were not read\n" +
                         f + ": 4 bad rows, nothing imported");
    CHECK(m.export_text() == before);
    // In the header row it is the file's one error.
    const std::string h = m.dir.write("header.csv", "add\"ress,state\nx@contoso.com,dual\n");
    CHECK(m.import(h).error == h + ":1: quote inside an unquoted field");
    CHECK(m.export_text() == before);
}

TEST_CASE("more than 100 bad rows: the first 100 by line, then '... and N more'") {
    BatchMap m;
    std::string csv = "address\n";
    for (int i = 0; i < 130; ++i) csv += "user" + std::to_string(i) + "@example.org\n";
    csv += "\"unclosed@contoso.com\n";  // a CSV syntax error ends the reading and is reported too
    const auto r = m.import_text(csv);
    CHECK_THAT(r.error, Catch::StartsWith(m.dir.file("in.csv") + ":2: 'user0@example.org' is not in a managed domain\n"));
    CHECK_THAT(r.error, Catch::Contains(":101: 'user99@example.org'"));
    // The row that ended the reading is shown whatever the count: nothing after it was checked.
    CHECK_THAT(r.error, Catch::Contains("\n... and 30 more\n" + m.dir.file("in.csv") +
                                        ":132: quoted field not closed; the rows after it were not read\n" +
                                        m.dir.file("in.csv") + ": 131 bad rows, nothing imported"));
    CHECK_FALSE(Catch::Contains(":102: ").match(r.error));
    CHECK(m.export_text() == "address,state,target,batch,aliases\n");
}

TEST_CASE("--dry-run shows every change as a diff: users added and changed, aliases added and removed") {
    BatchMap m;
    m.import_text(kBase);
    const std::string before = m.export_text();
    // The spreadsheet round trip of issue 12: ann's aliases cell emptied, bob given one.
    const std::string file = m.dir.write("edit.csv",
                                         "address,state,target,batch,aliases\n"
                                         "ann@contoso.com,migrated,,wave1,\n"
                                         "bob@contoso.com,dual,bob@contoso.onmicrosoft.com,wave3,bobby@contoso.com\n"
                                         "new@contoso.com,source,,wave3,\n");
    const auto dry = m.import(file, opts(std::nullopt, true, false));
    REQUIRE(dry.error == "");
    CHECK(dry.out ==
          "unalias a.lee@contoso.com (of ann@contoso.com)\n"
          "unalias anna@contoso.com (of ann@contoso.com)\n"
          "change bob@contoso.com: state source -> dual, target (none) -> bob@contoso.onmicrosoft.com, "
          "batch wave2 -> wave3\n"
          "alias bobby@contoso.com -> bob@contoso.com\n"
          "add new@contoso.com: source, batch wave3\n"
          "would import 3 rows from " + file + ": 1 added, 2 changed, 0 unchanged, 0 removed; aliases +1 -2\n");
    CHECK(m.export_text() == before);
    // The real run prints each alias removal too, then the summary.
    const auto real = m.import(file);
    REQUIRE(real.error == "");
    CHECK(real.out == "unalias a.lee@contoso.com (of ann@contoso.com)\n"
                      "unalias anna@contoso.com (of ann@contoso.com)\n"
                      "imported 3 rows from " + file + ": 1 added, 2 changed, 0 unchanged, 0 removed; aliases +1 -2\n");
}

TEST_CASE("a column the file lacks keeps each user's value (aliases, target, batch); a present one sets it") {
    BatchMap m;
    m.import_text(kBase + "jsmith@contoso.com,source,jsmith@contoso.onmicrosoft.com,wave1,\n");
    REQUIRE(m.import_text("address,state\nann@contoso.com,source\n").error == "");
    CHECK_THAT(m.export_text(), Catch::Contains("ann@contoso.com,source,,wave1,a.lee@contoso.com;anna@contoso.com\n"));
    // Microsoft's batch CSV for the cut-over: jsmith keeps his explicit routing address.
    REQUIRE(m.import(kData + "microsoft-batch.csv", opts(std::nullopt, false, false)).error == "");
    REQUIRE(m.import_text("EmailAddress\njsmith@contoso.com\n").error == "");
    CHECK_THAT(m.export_text(), Catch::Contains("jsmith@contoso.com,migrated,jsmith@contoso.onmicrosoft.com,wave1,\n"));
    // An empty cell of a present column clears the value, as export writes "none".
    REQUIRE(m.import_text("address,target,batch\njsmith@contoso.com,,\n").error == "");
    CHECK_THAT(m.export_text(), Catch::Contains("jsmith@contoso.com,migrated,,,\n"));
    // GAM and hand-typed lists: spaces and commas separate too.
    REQUIRE(m.import_text("address,aliases\nann@contoso.com,\"anna@contoso.com a.lee@contoso.com,al@contoso.com\"\n")
                .error == "");
    CHECK_THAT(m.export_text(),
               Catch::Contains("ann@contoso.com,migrated,,wave1,a.lee@contoso.com;al@contoso.com;anna@contoso.com\n"));
    // Export, re-import: nothing changes, aliases kept.
    const std::string exported = m.export_text();
    const auto again = m.import_text(exported);
    CHECK_THAT(again.out, Catch::EndsWith("0 added, 0 changed, 4 unchanged, 0 removed; aliases +0 -0\n"));
    CHECK(m.export_text() == exported);
}

TEST_CASE("--prune removes the admin's users not in the file, with their aliases, audited like remove") {
    BatchMap m;
    m.import_text(kBase + "carol@contoso.com,migrated,,wave1,caz@contoso.com\n");
    m.put_directory_user("dora@contoso.com", State::migrated, "wave1");
    const std::string file = m.dir.write("keep.csv", "address,state,batch\nbob@contoso.com,source,wave2\n");

    SECTION("without --batch: every admin-owned user not in the file; never the directory's") {
        const auto dry = m.import(file, opts(std::nullopt, true, true));
        REQUIRE(dry.error == "");
        CHECK(dry.out ==
              "remove ann@contoso.com: migrated, batch wave1 (not in the file)\n"
              "unalias a.lee@contoso.com (of ann@contoso.com)\n"
              "unalias anna@contoso.com (of ann@contoso.com)\n"
              "remove carol@contoso.com: migrated, batch wave1 (not in the file)\n"
              "unalias caz@contoso.com (of carol@contoso.com)\n"
              "would import 1 row from " + file + ": 0 added, 0 changed, 1 unchanged, 2 removed; aliases +0 -3\n");
        const auto real = m.import(file, opts(std::nullopt, false, true));
        REQUIRE(real.error == "");
        CHECK(real.out ==
              "remove ann@contoso.com: migrated, batch wave1 (not in the file)\n"
              "unalias a.lee@contoso.com (of ann@contoso.com)\n"
              "unalias anna@contoso.com (of ann@contoso.com)\n"
              "remove carol@contoso.com: migrated, batch wave1 (not in the file)\n"
              "unalias caz@contoso.com (of carol@contoso.com)\n"
              "imported 1 row from " + file + ": 0 added, 0 changed, 1 unchanged, 2 removed; aliases +0 -3\n");
        CHECK(m.export_text() == "address,state,target,batch,aliases\n"
                                 "bob@contoso.com,source,,wave2,\n"
                                 "dora@contoso.com,migrated,,wave1,\n");
        const auto h = m.history("ann@contoso.com");
        REQUIRE_FALSE(h.empty());
        CHECK(h.back().old_value == "migrated");
        CHECK(h.back().new_value == "");
        CHECK(h.back().command == "import " + file + " --prune");
        CHECK(m.history("anna@contoso.com").back().new_value == "");
    }
    SECTION("with --batch: only that batch's users") {
        const std::string wave2 = m.dir.write("wave2.csv", "address\nnew@contoso.com\n");
        const auto r = m.import(wave2, opts(std::string("wave2"), false, true));
        REQUIRE(r.error == "");
        CHECK(r.out == "remove bob@contoso.com: source, batch wave2 (not in the file)\n"
                       "imported 1 row from " + wave2 + ": 1 added, 0 changed, 0 unchanged, 1 removed; aliases +0 -0\n");
        CHECK(m.export_text() == "address,state,target,batch,aliases\n"
                                 "ann@contoso.com,migrated,,wave1,a.lee@contoso.com;anna@contoso.com\n"
                                 "carol@contoso.com,migrated,,wave1,caz@contoso.com\n"
                                 "dora@contoso.com,migrated,,wave1,\n"
                                 "new@contoso.com,migrated,,wave2,\n");
        // History names the options that decided it: the batch pruned, and --force when given.
        CHECK(m.history("bob@contoso.com").back().command == "import " + wave2 + " --batch wave2 --prune");
        auto forced = opts(std::string("wave2"), false, true);
        forced.force = true;
        REQUIRE(m.import(m.dir.write("none.csv", "address\nnew@contoso.com\nzed@contoso.com\n"), forced).error == "");
        CHECK(m.history("zed@contoso.com").back().command ==
              "import " + m.dir.file("none.csv") + " --batch wave2 --prune --force");
    }
    SECTION("an alias of a pruned user may go to a user of the file") {
        const std::string moved = m.dir.write("moved.csv", "address,state,batch,aliases\nbob@contoso.com,source,wave2,caz@contoso.com\n");
        const auto r = m.import(moved, opts(std::string("wave1"), false, true));
        REQUIRE(r.error == "");
        CHECK_THAT(m.export_text(), Catch::Contains("bob@contoso.com,source,,wave2,caz@contoso.com\n"));
        CHECK_FALSE(Catch::Contains("carol@").match(m.export_text()));
    }
    SECTION("a file with no rows is refused: it would remove everyone") {
        const auto r = m.import(m.dir.write("empty.csv", "address\n"), opts(std::string("wave1"), false, true));
        CHECK_THAT(r.error, Catch::Contains("no rows: --prune would remove every user of batch wave1"));
        CHECK_THAT(m.export_text(), Catch::Contains("ann@contoso.com"));
    }
}

TEST_CASE("a row for a directory-owned user is still refused, and reported with the other bad rows") {
    BatchMap m;
    m.put_directory_user("dora@contoso.com", State::source, "");
    const auto r = m.import_text("address\nnew@contoso.com\ndora@contoso.com\nbad@example.org\n");
    CHECK_THAT(r.error, Catch::Contains("in.csv:3: dora@contoso.com is owned by the directory"));
    CHECK_THAT(r.error, Catch::Contains("in.csv:4: 'bad@example.org' is not in a managed domain"));
    CHECK_THAT(r.error, Catch::EndsWith("2 bad rows, nothing imported"));
    CHECK_FALSE(Catch::Contains("new@contoso.com").match(m.export_text()));
}

TEST_CASE("--prune of more than half of the users in scope needs --force") {
    BatchMap m;
    std::string all = "address,state\n";
    for (int i = 0; i < 13; ++i) all += fmt::format("u{}@contoso.com,migrated\n", i);
    REQUIRE(m.import_text(all).error.empty());
    const std::string before = m.export_text();
    // A one-row file given --prune by mistake: 12 of 13 would go back to the source.
    const auto refused = m.import_text("address\nu0@contoso.com\n", opts(std::nullopt, false, true));
    CHECK_THAT(refused.error, Catch::Contains("--prune would remove 12 of the 13 users set by hand: more than half"));
    CHECK(m.export_text() == before);
    // The dry run lists them, says so and fails as the real run would (no summary of an import
    // that will not happen); --force does it.
    const auto dry = m.import_text("address\nu0@contoso.com\n", opts(std::nullopt, true, true));
    CHECK_THAT(dry.out, Catch::Contains("refused without --force"));
    CHECK_THAT(dry.out, Catch::Contains("u12@contoso.com"));
    CHECK_FALSE(Catch::Contains("would import").match(dry.out));
    CHECK_THAT(dry.error, Catch::Contains("--prune would remove 12 of the 13 users set by hand"));
    CHECK_THAT(dry.error, Catch::EndsWith("the import is refused without --force"));
    CHECK(m.export_text() == before);
    auto forced = opts(std::nullopt, false, true);
    forced.force = true;
    CHECK(m.import_text("address\nu0@contoso.com\n", forced).error.empty());
    CHECK(m.export_text() == "address,state,target,batch,aliases\nu0@contoso.com,migrated,,,\n");
}

TEST_CASE("the coexist-map binary on the sample files: warnings, every bad row, --prune, exit statuses") {
    BatchMap m;
    m.import_text(kBase);
    const std::string before = m.export_text();

    auto bad = test::run_tool(m.config_file, {"import", kData + "seven-bad-rows.csv"});
    CHECK(bad.status == 2);
    CHECK_THAT(bad.out, Catch::StartsWith("coexist-map: " + kData + "seven-bad-rows.csv:3: "));
    CHECK_THAT(bad.out, Catch::EndsWith("seven-bad-rows.csv: 7 bad rows, nothing imported (map unchanged)\n"));
    CHECK(m.export_text() == before);

    auto gam = test::run_tool(m.config_file, {"import", "--batch", "wave3", "--dry-run", kData + "gam-print-users.csv"});
    CHECK(gam.status == 0);
    CHECK_THAT(gam.out, Catch::Contains("gam-print-users.csv:1: ignoring 5 columns"));
    CHECK_THAT(gam.out, Catch::Contains("change ann@contoso.com: batch wave1 -> wave3\n"));
    CHECK_THAT(gam.out, Catch::Contains("add jsmith@contoso.com: migrated, batch wave3\n"));
    CHECK(m.export_text() == before);

    auto ms = test::run_tool(m.config_file, {"import", "--batch", "wave1", "--prune", kData + "microsoft-batch.csv"});
    CHECK(ms.status == 0);
    CHECK_THAT(ms.out, Catch::EndsWith("3 rows from " + kData +
                                       "microsoft-batch.csv: 1 added, 1 changed, 1 unchanged, 0 removed; "
                                       "aliases +0 -0\n"));
    CHECK_THAT(m.export_text(), Catch::Contains("bob@contoso.com,migrated,,wave1,\n"));
    CHECK(test::run_tool(m.config_file, {"import", "--prune", m.dir.write("h.csv", "address\n")}).status == 2);
}

TEST_CASE("an imported row drops the user's scheduled change, and the diff says so") {
    // A rollback imported before a planned cut-over must not be undone by the schedule later.
    BatchMap m;
    m.import_text(kBase);
    {
        MapStore store(m.config.map_path, m.config.map_size, MapStore::Mode::read_write);
        store.write(ChangeContext{"test", "batch set", 1}, [&](MapTxn& t) {
            auto r = *t.user("bob@contoso.com");
            r.pending_state = State::migrated;
            r.pending_at = 4102444800;  // 2100-01-01T00:00:00Z
            t.put_user("bob@contoso.com", r);
        });
    }
    const std::string file = m.dir.write("rollback.csv", "address,state\nbob@contoso.com,source\n");
    const auto dry = m.import(file, opts(std::nullopt, true, false));
    REQUIRE(dry.error == "");
    CHECK_THAT(dry.out, Catch::StartsWith("change bob@contoso.com: pending migrated at 2100-01-01T00:00:00Z -> (none)\n"));
    REQUIRE(m.import(file).error == "");
    MapStore store(m.config.map_path, m.config.map_size, MapStore::Mode::read_only);
    store.read([&](MapTxn& t) {
        const auto r = t.user("bob@contoso.com");
        REQUIRE(r);
        CHECK(r->state == State::source);
        CHECK_FALSE(r->pending_state);
    });
}

TEST_CASE("--state names the state of rows without one: a batch imported as source, to be scheduled later") {
    BatchMap m;
    tool::ImportOptions options;
    options.batch = "wave3";
    options.state = "source";
    REQUIRE(m.import(kData + "microsoft-batch.csv", options).error == "");
    CHECK(m.export_text() ==
          "address,state,target,batch,aliases\n"
          "ann@contoso.com,source,,wave3,\n"
          "bob@contoso.com,source,,wave3,\n"
          "erin@fabrikam.com,source,,wave3,\n");
    // A state cell still wins over --state.
    options.state = "dual";
    REQUIRE(m.import_text("address,state\nann@contoso.com,migrated\nbob@contoso.com,\n", options).error == "");
    CHECK_THAT(m.export_text(), Catch::Contains("ann@contoso.com,migrated,,wave3,\nbob@contoso.com,dual,,wave3,\n"));
    options.state = "gone";
    CHECK_THROWS_AS(m.import(kData + "microsoft-batch.csv", options), tool::UsageError);
    auto r = test::run_tool(m.config_file, {"import", "--state", "gone", kData + "microsoft-batch.csv"});
    CHECK(r.status == 1);
    CHECK_THAT(r.out, Catch::Contains("--state 'gone': expected source, migrated or dual"));
    r = test::run_tool(m.config_file, {"import", "--batch", "w4", "--state", "source", kData + "microsoft-batch.csv"});
    CHECK(r.status == 0);
    CHECK_THAT(m.export_text(), Catch::Contains("ann@contoso.com,source,,w4,\n"));
}

// The rows stream into the write transaction (design 13.4): a bad row at the very end still
// leaves the map as it was, and a user or an alias listed twice is caught however far apart.
TEST_CASE("a 50,000-row file: duplicates far apart and a bad last row are named; nothing is imported") {
    BatchMap m;
    m.import_text(kBase);
    const std::string before = m.export_text();
    std::string csv = "address,state,batch,aliases\n";
    for (int i = 0; i < 50000; ++i)
        csv += fmt::format("user{}@contoso.com,migrated,big,{}\n", i, i == 3 ? "far@contoso.com" : "");
    const std::string good = csv;
    csv += "user7@contoso.com,source,big,\n";                   // line 50002
    csv += "late@contoso.com,migrated,big,far@contoso.com\n";   // line 50003
    csv += "stranger@example.org,migrated,big,\n";              // line 50004
    const auto r = m.import_text(csv);
    const std::string f = m.dir.file("in.csv");
    CHECK(r.error == f + ":50002: user7@contoso.com is listed twice (first on line 9)\n" +
                         f + ":50003: alias far@contoso.com is listed twice (first on line 5)\n" +
                         f + ":50004: 'stranger@example.org' is not in a managed domain\n" +
                         f + ": 3 bad rows, nothing imported");
    CHECK(r.out == "");
    CHECK(m.export_text() == before);
    CHECK(m.history("user0@contoso.com").empty());
    // The dry run names the same rows and prints no diff.
    const auto dry = m.import_text(csv, opts(std::nullopt, true, false));
    CHECK(dry.error == r.error);
    CHECK(dry.out == "");
    // Without those rows the file imports whole.
    const auto ok = m.import_text(good);
    REQUIRE(ok.error == "");
    CHECK(ok.out == "imported 50000 rows from " + f + ": 50000 added, 0 changed, 0 unchanged, 0 removed; aliases +1 -0\n");
    CHECK_THAT(m.export_text(), Catch::Contains("user3@contoso.com,migrated,,big,far@contoso.com\n"));
}

// A row taken back (its alias was claimed first) is not imported, but its user is still in the
// file: a later row of that user is listed twice, and an alias naming it is a user.
TEST_CASE("a row taken back for a duplicate alias still names its user, for the rows after it") {
    BatchMap m;
    std::string csv = "address,state,aliases\n";
    csv += "ann@contoso.com,migrated,far@contoso.com\n";  // line 2
    for (int i = 0; i < 300; ++i) csv += fmt::format("user{}@contoso.com,migrated,\n", i);
    csv += "late@contoso.com,migrated,far@contoso.com\n";  // line 303: taken back
    csv += "late@contoso.com,source,\n";                   // line 304
    csv += "cid@contoso.com,source,late@contoso.com\n";    // line 305
    const auto r = m.import_text(csv);
    const std::string f = m.dir.file("in.csv");
    CHECK(r.error == f + ":303: alias far@contoso.com is listed twice (first on line 2)\n" +
                         f + ":304: late@contoso.com is listed twice (first on line 303)\n" +
                         f + ":305: alias late@contoso.com is also a user (line 303)\n" +
                         f + ": 3 bad rows, nothing imported");
    CHECK(m.export_text() == "address,state,target,batch,aliases\n");
}

// The staged row keeps every field the file sets: a target, a batch, a scheduled change, aliases.
TEST_CASE("every field of a row survives staging: target, batch, pending change, aliases") {
    BatchMap m;
    const auto r = m.import_text("address,state,target,batch,aliases,pending_state,pending_at\n"
                                 "ann@contoso.com,source,ann@o365.contoso.com,wave1,"
                                 "\"anna@contoso.com;a.lee@contoso.com\",migrated,2099-01-02T03:04:05Z\n"
                                 "bob@contoso.com,dual,,,,,\n");
    REQUIRE(r.error == "");
    CHECK(r.out == "imported 2 rows from " + m.dir.file("in.csv") +
                       ": 2 added, 0 changed, 0 unchanged, 0 removed; aliases +2 -0\n");
    MapStore store(m.config.map_path, m.config.map_size, MapStore::Mode::read_only);
    store.read([&](MapTxn& t) {
        const auto ann = t.user("ann@contoso.com");
        REQUIRE(ann);
        CHECK(ann->state == State::source);
        CHECK(ann->target == "ann@o365.contoso.com");
        CHECK(ann->batch == "wave1");
        REQUIRE(ann->pending_state);
        CHECK(*ann->pending_state == State::migrated);
        CHECK(ann->pending_at == 4071006245);
        CHECK(t.alias_primary("anna@contoso.com") == std::optional<std::string>("ann@contoso.com"));
        CHECK(t.alias_primary("a.lee@contoso.com") == std::optional<std::string>("ann@contoso.com"));
        const auto bob = t.user("bob@contoso.com");
        REQUIRE(bob);
        CHECK(bob->state == State::dual);
        CHECK(bob->target == "");
        CHECK(bob->batch == "");
        CHECK_FALSE(bob->pending_state);
    });
}
