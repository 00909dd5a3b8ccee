// coexist-map's commands: import validation (all rows or nothing), export round trip, single
// changes, aliases, the audit trail, exit statuses of the real binary.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include <sstream>

#include "coexist/map_reader.hpp"
#include "coexist/map_store.hpp"
#include "coexist/route.hpp"
#include "commands.hpp"
#include "fixture.hpp"

using namespace coexist;

namespace {

struct AdminMap {
    test::TempDir dir;
    Config config;
    std::string config_file;
    AdminMap() : config(test::standard_config(dir.file("map"))) {
        config_file = dir.write("coexist.ini", test::standard_config_text(dir.file("map")));
        std::ostringstream out;
        tool::init(config, out);
    }
    std::string export_text() {
        std::ostringstream out;
        tool::export_csv(config, out);
        return out.str();
    }
    void import_text(const std::string& csv, const std::optional<std::string>& batch = std::nullopt) {
        std::ostringstream out;
        tool::import_csv(config, dir.write("in.csv", csv), batch, false, out);
    }
    std::string import_error(const std::string& csv) {
        const std::string file = dir.write("bad.csv", csv);
        std::ostringstream out;
        try {
            tool::import_csv(config, file, std::nullopt, false, out);
        } catch (const tool::DataError& e) {
            return e.what();
        }
        return "no error";
    }
};

const std::string kSample =
    "address,state,target,batch,aliases\n"
    "ann@contoso.com,migrated,,wave1,anna@contoso.com;a.lee@contoso.com\n"
    "bob@contoso.com,source,,wave2,\n"
    "jsmith@contoso.com,dual,jsmith@contoso.onmicrosoft.com,wave1,\n"
    "erin@fabrikam.com,,,,\n";

}  // namespace

TEST_CASE("import then export gives the canonical CSV, and export round-trips byte for byte") {
    AdminMap m;
    m.import_text(kSample);
    const std::string exported = m.export_text();
    CHECK(exported ==
          "address,state,target,batch,aliases\n"
          "ann@contoso.com,migrated,,wave1,a.lee@contoso.com;anna@contoso.com\n"
          "bob@contoso.com,source,,wave2,\n"
          "erin@fabrikam.com,migrated,,,\n"
          "jsmith@contoso.com,dual,jsmith@contoso.onmicrosoft.com,wave1,\n");

    AdminMap fresh;
    fresh.import_text(exported);
    CHECK(fresh.export_text() == exported);
    // Importing the export into the same map changes nothing.
    m.import_text(exported);
    CHECK(m.export_text() == exported);
}

TEST_CASE("export quotes what needs quoting and import reads it back") {
    AdminMap m;
    m.import_text("address,batch,aliases\n\"\"\"o,k\"\"@contoso.com\",\"wave, one\",\n");
    CHECK(m.export_text() == "address,state,target,batch,aliases\n\"\"\"o,k\"\"@contoso.com\",migrated,,\"wave, one\",\n");
    const std::string exported = m.export_text();
    AdminMap fresh;
    fresh.import_text(exported);
    CHECK(fresh.export_text() == exported);
}

TEST_CASE("a quoted '@' in a local part is an address, and export writes it quoted again") {
    AdminMap m;
    m.import_text("address\n\"\"\"a@b\"\"@contoso.com\"\n");
    const std::string exported = m.export_text();
    CHECK(exported == "address,state,target,batch,aliases\n\"\"\"a@b\"\"@contoso.com\",migrated,,,\n");
    AdminMap fresh;
    fresh.import_text(exported);
    CHECK(fresh.export_text() == exported);
}

TEST_CASE("--batch names rows that have no batch") {
    AdminMap m;
    m.import_text("address\nann@contoso.com\nbob@contoso.com\n", std::string("wave3"));
    std::ostringstream out;
    tool::list(m.config, std::nullopt, std::string("wave3"), out);
    CHECK(out.str() == "ann@contoso.com migrated batch=wave3\nbob@contoso.com migrated batch=wave3\n");
}

TEST_CASE("list --batch refuses a batch no user is in, and lists nothing for a batch without the state") {
    AdminMap m;
    m.import_text("address\nann@contoso.com\n", std::string("wave3"));
    // A misspelt batch is a data error, as batch set and scripts say it.
    const auto misspelt = test::run_tool(m.config_file, {"list", "--batch", "wave33"});
    CHECK(misspelt.status == 2);
    CHECK(misspelt.out == "coexist-map: unknown batch 'wave33': no user of the map is in it\n");
    // A batch that exists with no user in the asked state is an empty answer, not an error.
    const auto none = test::run_tool(m.config_file, {"list", "--batch", "wave3", "--state", "dual"});
    CHECK(none.status == 0);
    CHECK(none.out.empty());
}

TEST_CASE("a batch name with a blank at its end, or an empty import --batch, is refused and changes nothing") {
    AdminMap m;
    m.import_text("address,batch\nann@contoso.com,wave9\n");
    const std::string before = m.export_text();
    const auto set = test::run_tool(m.config_file, {"set", "bob@contoso.com", "source", "--batch", "wave9 "});
    CHECK(set.status == 2);
    CHECK_THAT(set.out, Catch::Contains("batch name 'wave9 ' starts or ends with a blank"));
    const std::string csv = m.dir.write("b.csv", "address\nann@contoso.com\n");
    CHECK(test::run_tool(m.config_file, {"import", csv, "--batch", " wave9"}).status == 2);
    const auto empty = test::run_tool(m.config_file, {"import", csv, "--batch", ""});
    CHECK(empty.status == 1);
    CHECK_THAT(empty.out, Catch::Contains("--batch '': an empty batch name"));
    CHECK(m.export_text() == before);
}

TEST_CASE("import and restore of a directory say so, and change nothing") {
    AdminMap m;
    m.import_text(kSample);
    const std::string before = m.export_text();
    const auto import = test::run_tool(m.config_file, {"import", m.dir.path()});
    CHECK(import.status == 2);
    CHECK_THAT(import.out, Catch::Contains(m.dir.path() + ": is a directory, not a CSV file"));
    const auto restore = test::run_tool(m.config_file, {"restore", m.dir.path()});
    CHECK(restore.status == 2);
    CHECK_THAT(restore.out, Catch::Contains(m.dir.path() + ": is a directory, not a dump file"));
    CHECK(m.export_text() == before);
}

TEST_CASE("one bad row fails the whole import with FILE:LINE and leaves the map untouched") {
    AdminMap m;
    m.import_text(kSample);
    const std::string before = m.export_text();
    struct Case {
        std::string csv;
        std::string error;
    };
    const Case c = GENERATE(values<Case>({
        {"address,state\nnew@contoso.com,migrated\nbad address,migrated\n", "bad.csv:3: 'bad address' is not a valid address"},
        {"address,state\nnew@contoso.com,migrated\nx@example.org,migrated\n", "bad.csv:3: 'x@example.org' is not in a managed domain"},
        {"address,state\nnew@contoso.com,gone\n", "bad.csv:2: unknown state 'gone'"},
        {"address,target\nnew@contoso.com,back@contoso.com\n", "bad.csv:2: target 'back@contoso.com' is in a managed domain"},
        {"address,target\nnew@contoso.com,not-an-address\n", "bad.csv:2: target 'not-an-address' is not a valid address"},
        {"address,state\nnew@contoso.com,migrated\nbad@@contoso.com,migrated\n",
         "bad.csv:3: 'bad@@contoso.com' has an '@' in its local part"},
        {"address,target\nnew@contoso.com,new@@contoso.onmicrosoft.com\n",
         "bad.csv:2: target 'new@@contoso.onmicrosoft.com' has an '@' in its local part"},
        {"address\nnew@contoso.com\nNEW@contoso.com\n", "bad.csv:3: new@contoso.com is listed twice (first on line 2)"},
        {"address\nnew@contoso.com\nnew@contoso.net\n", "bad.csv:3: new@contoso.com is listed twice"},
        {"address,aliases\nnew@contoso.com,n1@contoso.com\nnew2@contoso.com,n1@contoso.com\n", "bad.csv:3: alias n1@contoso.com is listed twice"},
        {"address,aliases\nnew@contoso.com,new2@contoso.com\nnew2@contoso.com,\n", "bad.csv:2: alias new2@contoso.com is also a user (line 3)"},
        {"address,aliases\nnew@contoso.com,bob@contoso.com\n", "bad.csv:2: alias bob@contoso.com is a user in the map"},
        {"address,aliases\nnew@contoso.com,anna@contoso.com\n", "bad.csv:2: alias anna@contoso.com belongs to ann@contoso.com"},
        {"address\nanna@contoso.com\n", "bad.csv:2: anna@contoso.com is an alias of ann@contoso.com"},
        // One user, two spellings: the canonical form (design 13.2) makes them the same key.
        {"address\nnew@contoso.com\n\"\"\"New\"\"@contoso.com\"\n", "bad.csv:3: new@contoso.com is listed twice"},
        {"address\nStraße@contoso.com\nSTRASSE@contoso.com\n", "bad.csv:3: strasse@contoso.com is listed twice"},
        {"address,state\nnew@contoso.com\n", "bad.csv:2: 1 fields, the header has 2"},
        {"state\nmigrated\n", "bad.csv:1: no 'address' column"},
        {"address\n\"new@contoso.com\n", "bad.csv:2: quoted field not closed"},
        {"", "bad.csv: empty file"},
    }));
    CAPTURE(c.csv);
    const std::string error = m.import_error(c.csv);
    CHECK_THAT(error, Catch::Contains(c.error));
    CHECK(m.export_text() == before);
}

TEST_CASE("a valid 'alias moves to another user' import is accepted") {
    AdminMap m;
    m.import_text(kSample);
    m.import_text("address,aliases\nann@contoso.com,a.lee@contoso.com\nbob@contoso.com,anna@contoso.com\n");
    std::ostringstream out;
    tool::get(m.config, "anna@contoso.com", out);
    CHECK_THAT(out.str(), Catch::StartsWith("anna@contoso.com: alias of bob@contoso.com\n"));
}

TEST_CASE("set keeps target and batch unless given; remove takes the aliases along") {
    AdminMap m;
    m.import_text(kSample);
    std::ostringstream out;
    tool::set(m.config, "jsmith@contoso.com", "migrated", std::nullopt, std::nullopt, out);
    MapReader reader(m.config.map_path);
    auto found = reader.find("jsmith@contoso.com");
    REQUIRE(found.record);
    CHECK(found.record->target == "jsmith@contoso.onmicrosoft.com");
    CHECK(found.record->batch == "wave1");
    CHECK(found.record->state == State::migrated);

    tool::remove(m.config, "ann@contoso.com", out);
    CHECK_FALSE(reader.find("ann@contoso.com").record);
    CHECK_FALSE(reader.find("anna@contoso.com").via_alias);
    CHECK_THROWS_AS(tool::set(m.config, "x@contoso.com", "moved", std::nullopt, std::nullopt, out), tool::DataError);
}

TEST_CASE("set says when it changes the target or the batch, not only the state") {
    // Walk-through: `set carol@contoso.com migrated --target ''` moved carol's mail from
    // carol@contoso.onmicrosoft.com to carol@o365.contoso.com and printed only
    // "carol@contoso.com: migrated -> migrated", as if nothing had changed.
    AdminMap m;
    m.import_text(kSample);
    std::ostringstream out;
    tool::set(m.config, "jsmith@contoso.com", "migrated", std::string(), std::nullopt, out);
    CHECK(out.str() == "jsmith@contoso.com: dual -> migrated, target jsmith@contoso.onmicrosoft.com -> (none)\n");
    out.str("");
    tool::set(m.config, "jsmith@contoso.com", "dual", std::string("js@contoso.onmicrosoft.com"),
              std::string("wave2"), out);
    CHECK(out.str() == "jsmith@contoso.com: migrated -> dual, target (none) -> js@contoso.onmicrosoft.com, "
                       "batch wave1 -> wave2\n");
    out.str("");
    // Given as they were: nothing more to say.
    tool::set(m.config, "jsmith@contoso.com", "dual", std::string("js@contoso.onmicrosoft.com"),
              std::string("wave2"), out);
    CHECK(out.str() == "jsmith@contoso.com: dual -> dual\n");
    out.str("");
    tool::set(m.config, "new@contoso.com", "source", std::nullopt, std::string("wave9"), out);
    CHECK(out.str() == "new@contoso.com: new -> source\n");
}

// Trimmed first, an address of blanks read '' in the error, as if none had been given.
TEST_CASE("an address or target of blanks only is named as given, and changes nothing") {
    AdminMap m;
    m.import_text(kSample);
    const std::string before = m.export_text();
    std::ostringstream out;
    CHECK_THROWS_WITH(tool::set(m.config, " ", "migrated", std::nullopt, std::nullopt, out),
                      "' ' is blank, not an address");
    CHECK_THROWS_WITH(tool::set(m.config, "ann@contoso.com", "migrated", std::string(" \t"), std::nullopt, out),
                      "target ' ?' is blank, not an address");
    CHECK(m.export_text() == before);
}

TEST_CASE("a target whose domain is no host name, and control bytes in what was typed, are refused readably") {
    AdminMap m;
    m.import_text(kSample);
    const std::string before = m.export_text();
    std::ostringstream out;
    CHECK_THROWS_WITH(tool::set(m.config, "ann@contoso.com", "migrated", std::string("ann@-bad-.com"), std::nullopt, out),
                      "target 'ann@-bad-.com': its domain is no host name mail can be sent to: the label '-bad-' "
                      "begins or ends with a hyphen");
    CHECK_THROWS_WITH(tool::set(m.config, "ann@contoso.com", "migrated", std::string("ann@localhost"), std::nullopt, out),
                      Catch::Contains("a single label"));
    CHECK_THROWS_WITH(tool::set(m.config, "ann@contoso.com", "migrated", std::string("ann@1.2.3.4"), std::nullopt, out),
                      Catch::Contains("the last label '4' is all digits"));
    CHECK_THROWS_WITH(tool::set(m.config, "ann@contoso.com", "migrated", std::string("ann@xn--zz.com"), std::nullopt, out),
                      Catch::Contains("no valid internationalized name"));
    // An escape sequence is no address, and reaches the terminal as '?', not as a colour change.
    CHECK_THROWS_WITH(tool::set(m.config, "ann\x1b[31m@contoso.com", "migrated", std::nullopt, std::nullopt, out),
                      "'ann?[31m@contoso.com' is not a valid address");
    CHECK_THROWS_WITH(tool::set(m.config, "ann@contoso.com", "mig\x1b]0;x\x07", std::nullopt, std::nullopt, out),
                      "unknown state 'mig?]0;x?' (expected source, migrated or dual)");
    CHECK(m.export_text() == before);
    // An A-label that decodes is a host name.
    CHECK_NOTHROW(tool::set(m.config, "ann@contoso.com", "migrated", std::string("ann@xn--mller-kva.de"), std::nullopt, out));
}

TEST_CASE("an address or target holding a character that shows as nothing is refused, naming it") {
    AdminMap m;
    m.import_text(kSample);
    const std::string before = m.export_text();
    std::ostringstream out;
    const std::pair<std::string, std::string> cases[] = {
        {"\xc2\xa0zz2@contoso.com", "U+00A0"},          // a leading no-break space
        {"zz3\xe2\x80\x8b@contoso.com", "U+200B"},       // a zero-width space
        {"\xef\xbb\xbfzz7@contoso.com", "U+FEFF"},       // a byte-order mark inside a cell
        {"ev\xe2\x80\xaeil@contoso.com", "U+202E"},      // a right-to-left override
        {"zz\xe2\x80\xa8@contoso.com", "U+2028"},        // a line separator
    };
    for (const auto& [address, code] : cases) {
        CAPTURE(address);
        CHECK_THROWS_WITH(tool::set(m.config, address, "migrated", std::nullopt, std::nullopt, out),
                          Catch::Contains(code + ", a character that shows as nothing or as a blank"));
        CHECK_THROWS_WITH(tool::set(m.config, "ann@contoso.com", "migrated", "t" + address, std::nullopt, out),
                          Catch::StartsWith("target '") && Catch::Contains(code));
        CHECK_THAT(m.import_error("address\n" + address + "\n"), Catch::Contains("bad.csv:2: '") && Catch::Contains(code));
    }
    // UTF-8 that is letters stays an address (RFC 6531): a local part in another script.
    CHECK_NOTHROW(tool::set(m.config, "j\xc3\xb6rg@contoso.com", "migrated", std::nullopt, std::nullopt, out));
    tool::remove(m.config, "j\xc3\xb6rg@contoso.com", out);
    CHECK(m.export_text() == before);
}

TEST_CASE("route - skips the byte-order mark of a list saved on Windows") {
    AdminMap m;
    m.import_text(kSample);
    const auto r = test::run_tool(m.config_file, {"route", "-"},
                                  m.dir.write("list.txt", "\xef\xbb\xbf" "ann@contoso.com\r\nbob@contoso.com\r\n"));
    CHECK(r.status == 0);
    CHECK(r.out == "ann@contoso.com rewrite ann@o365.contoso.com\nbob@contoso.com relay\n");
}

TEST_CASE("alias says when it takes the alias from another user") {
    AdminMap m;
    m.import_text(kSample);  // anna@ is ann@'s alias
    std::ostringstream out;
    tool::alias(m.config, "anna@contoso.com", "bob@contoso.com", out);
    CHECK(out.str() == "anna@contoso.com: alias of bob@contoso.com (moved from ann@contoso.com)\n");
    out.str("");
    tool::alias(m.config, "anna@contoso.com", "bob@contoso.com", out);  // already bob's
    CHECK(out.str() == "anna@contoso.com: alias of bob@contoso.com\n");
    out.str("");
    tool::alias(m.config, "new@contoso.com", "bob@contoso.com", out);
    CHECK(out.str() == "new@contoso.com: alias of bob@contoso.com\n");
}

TEST_CASE("set on an alias, alias to a missing user, and alias of a user are refused") {
    AdminMap m;
    m.import_text(kSample);
    std::ostringstream out;
    CHECK_THROWS_WITH(tool::set(m.config, "anna@contoso.com", "source", std::nullopt, std::nullopt, out),
                      Catch::Contains("is an alias of ann@contoso.com"));
    CHECK_THROWS_WITH(tool::alias(m.config, "x@contoso.com", "ghost@contoso.com", out), Catch::Contains("no such user"));
    CHECK_THROWS_WITH(tool::alias(m.config, "bob@contoso.com", "ann@contoso.com", out), Catch::Contains("is a user"));
    CHECK_THROWS_WITH(tool::unalias(m.config, "ghost@contoso.com", out), Catch::Contains("no such alias"));
}

TEST_CASE("history records every change: when, old -> new, batch, who") {
    AdminMap m;
    std::ostringstream out;
    tool::set(m.config, "ann@contoso.com", "source", std::nullopt, std::string("wave1"), out);
    tool::set(m.config, "ann@contoso.com", "migrated", std::nullopt, std::nullopt, out);
    tool::set(m.config, "ann@contoso.com", "migrated", std::nullopt, std::nullopt, out);  // no change
    tool::set(m.config, "ann@contoso.com", "source", std::nullopt, std::nullopt, out);
    std::ostringstream h;
    tool::history(m.config, "ann@contoso.com", h);
    std::vector<std::string> lines;
    std::istringstream in(h.str());
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    REQUIRE(lines.size() == 3);
    CHECK_THAT(lines[0], Catch::Contains("ann@contoso.com: (none) -> source, batch=wave1, by=" + current_user_name() + " (set)"));
    CHECK_THAT(lines[1], Catch::Contains("source -> migrated, batch=wave1"));
    CHECK_THAT(lines[2], Catch::Contains("migrated -> source, batch=wave1"));
}

TEST_CASE("--dry-run prints the changes and writes nothing") {
    AdminMap m;
    m.import_text(kSample);
    const std::string before = m.export_text();
    std::ostringstream out;
    tool::import_csv(m.config, m.dir.write("d.csv", "address,state\nbob@contoso.com,migrated\nnew@contoso.com,dual\n"),
                     std::nullopt, true, out);
    CHECK(out.str() ==
          "change bob@contoso.com: state source -> migrated\nadd new@contoso.com: dual\n"
          "would import 2 rows from " + m.dir.file("d.csv") + ": 1 added, 1 changed, 0 unchanged, 0 removed; "
          "aliases +0 -0\n");
    CHECK(m.export_text() == before);
}

TEST_CASE("the coexist-map binary: exit statuses and route output") {
    AdminMap m;
    m.import_text(kSample);
    auto r = test::run_tool(m.config_file, {"route", "Ann+News@CONTOSO.com", "bob@contoso.com", "x@example.org",
                                            "nobody@fabrikam.com", "jsmith@contoso.com"});
    CHECK(r.status == 0);
    CHECK(r.out ==
          "Ann+News@CONTOSO.com rewrite ann+News@o365.contoso.com\nbob@contoso.com relay\n"
          "x@example.org foreign\nnobody@fabrikam.com reject\n"
          "jsmith@contoso.com dual jsmith@contoso.onmicrosoft.com\n");
    CHECK(test::run_tool(m.config_file, {"set", "ann@contoso.com"}).status == 1);         // usage
    // A data error says "(map unchanged)" after a command that writes, not after one that reads.
    const auto bad_state = test::run_tool(m.config_file, {"set", "ann@contoso.com", "nope"});
    CHECK(bad_state.status == 2);
    CHECK_THAT(bad_state.out, Catch::EndsWith(" (map unchanged)\n"));
    const auto unknown = test::run_tool(m.config_file, {"get", "nobody@contoso.com"});
    CHECK(unknown.status == 2);
    CHECK(unknown.out == "coexist-map: no such user or alias: nobody@contoso.com\n");
    CHECK(test::run_tool(m.config_file, {"import", m.dir.write("e.csv", "address\nbad\n")}).status == 2);
    const auto missing = m.dir.write("missing.ini", test::standard_config_text(m.dir.file("nomap")));
    CHECK(test::run_tool(missing, {"list"}).status == 3);
    auto rt = test::run_tool(missing, {"route", "ann@contoso.com"});
    CHECK(rt.status == 3);
    CHECK_THAT(rt.out, Catch::StartsWith("ann@contoso.com tempfail\n"));
    CHECK(test::run_tool(m.config_file, {"--version"}).out == "coexist-map 0.1.0\n");
}

TEST_CASE("map files take the directory's group; the lock file is group-writable for the daemons") {
    AdminMap m;
    m.import_text(kSample);
    struct stat data{}, lock{};
    REQUIRE(::stat((m.config.map_path + "/data.mdb").c_str(), &data) == 0);
    REQUIRE(::stat((m.config.map_path + "/lock.mdb").c_str(), &lock) == 0);
    CHECK((data.st_mode & 0777) == 0640);
    CHECK((lock.st_mode & 0777) == 0660);
}

TEST_CASE("stats counts users by state and batch") {
    AdminMap m;
    m.import_text(kSample);
    std::ostringstream out;
    tool::stats(m.config, out);
    CHECK_THAT(out.str(), Catch::Contains("users: 4 (source 1, migrated 2, dual 1)\naliases: 2\nbatches: 2\n"));
}

TEST_CASE("a map written by root is readable by an unprivileged daemon user in the directory's group") {
    if (::geteuid() != 0) {
        WARN("not root: skipped");
        return;
    }
    // The daemons' side: user nobody, group nogroup (Debian's unprivileged pair). The map
    // directory belongs to that group, as the deploy kit sets up /var/lib/coexist.
    AdminMap m;
    REQUIRE(::chmod(m.dir.path().c_str(), 0755) == 0);
    m.import_text(kSample);
    const std::string as_nobody = "setpriv --reuid=nobody --regid=nogroup --init-groups ";
    REQUIRE(std::system(("chgrp -R nogroup '" + m.config.map_path + "' && chmod 0750 '" + m.config.map_path + "'").c_str()) == 0);
    // A write by root afterwards must keep the files usable for the group (LMDB would create
    // or keep them root-only otherwise, and every lookup of the daemons would fail).
    std::ostringstream out;
    tool::set(m.config, "bob@contoso.com", "migrated", std::nullopt, std::nullopt, out);
    ::chmod(m.config_file.c_str(), 0644);
    FILE* p = ::popen((as_nobody + COEXIST_MAP_BINARY + " -c '" + m.config_file +
                       "' route ann@contoso.com bob@contoso.com 2>&1").c_str(), "r");
    REQUIRE(p);
    char buf[512] = {};
    const std::size_t n = std::fread(buf, 1, sizeof buf - 1, p);
    const int status = ::pclose(p);
    CHECK(std::string(buf, n) == "ann@contoso.com rewrite ann@o365.contoso.com\nbob@contoso.com rewrite bob@o365.contoso.com\n");
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("an import that only changes aliases counts and shows the change (dry run and real)") {
    // Found by an admin walk-through: a row with an empty aliases cell removed the user's aliases
    // (their mail then went to the old system) while the summary said "1 unchanged".
    AdminMap m;
    m.import_text(kSample);
    const std::string file = m.dir.write("a.csv", "address,state,batch,aliases\n"
                                                  "ann@contoso.com,migrated,wave1,\n"
                                                  "bob@contoso.com,source,wave2,bobby@contoso.com\n");
    std::ostringstream dry;
    tool::import_csv(m.config, file, std::nullopt, true, dry);
    CHECK(dry.str() ==
          "unalias a.lee@contoso.com (of ann@contoso.com)\n"
          "unalias anna@contoso.com (of ann@contoso.com)\n"
          "alias bobby@contoso.com -> bob@contoso.com\n"
          "would import 2 rows from " + file + ": 0 added, 2 changed, 0 unchanged, 0 removed; aliases +1 -2\n");
    std::ostringstream real;
    tool::import_csv(m.config, file, std::nullopt, false, real);
    CHECK(real.str() == "unalias a.lee@contoso.com (of ann@contoso.com)\n"
                        "unalias anna@contoso.com (of ann@contoso.com)\n"
                        "imported 2 rows from " + file + ": 0 added, 2 changed, 0 unchanged, 0 removed; aliases +1 -2\n");
    std::ostringstream again;
    tool::import_csv(m.config, file, std::nullopt, false, again);
    CHECK(again.str() == "imported 2 rows from " + file + ": 0 added, 0 changed, 2 unchanged, 0 removed; aliases +0 -0\n");
}

// A write transaction keeps cursors on users and audit (MapTxnImpl): removals and restores
// through other handles in the same transaction (merging and splitting the pages under them)
// must leave every later read and write of the kept cursors right.
TEST_CASE("one write transaction mixing put_user, remove_user and restore_user over thousands of users") {
    AdminMap m;
    MapStore store(m.config.map_path, m.config.map_size, MapStore::Mode::read_write);
    auto key = [](int i) { return fmt::format("u{:05}@contoso.com", i); };
    store.write(ChangeContext{"test", "mixed", 1}, [&](MapTxn& t) {
        UserRecord r;
        for (int i = 0; i < 6000; i += 2) t.put_user(key(i), r);          // in key order
        for (int i = 0; i < 6000; i += 4) CHECK(t.remove_user(key(i)));  // every other one again
        for (int i = 5999; i > 0; i -= 2) t.put_user(key(i), r);          // between, backwards
        for (int i = 0; i < 6000; i += 8) t.restore_user(key(i), r);      // some removed ones back
        r.state = State::source;
        for (int i = 1; i < 6000; i += 6) t.put_user(key(i), r);          // changed
    });
    store.read([&](MapTxn& t) {
        std::size_t users = 0;
        for (int i = 0; i < 6000; ++i) {
            const auto u = t.user(key(i));
            const bool present = i % 2 == 1 || i % 4 == 2 || i % 8 == 0;
            CHECK(u.has_value() == present);
            if (!u) continue;
            ++users;
            CHECK(u->state == (i % 6 == 1 ? State::source : State::migrated));
        }
        CHECK(t.user_count() == users);
        // Audited: 3000 adds, 1500 removals, 3000 adds, 1000 changes (restore_user is not audited).
        CHECK(t.audit_count() == 8500);
        CHECK(t.history(key(1)).size() == 2);
        CHECK(t.history(key(4)).size() == 2);
    });
}
