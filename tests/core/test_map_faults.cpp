// A damaged or badly-owned map never kills a process and never locks the daemons out:
// a truncated data.mdb is "map unavailable" (tempfail, exit 3) for every opener instead of
// SIGBUS (issue 10 defect 1), and a read-only command run as root leaves the files usable by the
// daemons' unprivileged user (defect 4).
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <thread>

#include "coexist/map_reader.hpp"
#include "coexist/map_store.hpp"
#include "coexist/route.hpp"
#include "map_fault_fixture.hpp"
#include "map_files.hpp"

using namespace coexist;
using test::FaultMap;
using test::in_child;

namespace {

// 0: the decision is tempfail and names data.mdb; otherwise which part was wrong.
int expect_tempfail_naming_file(const Config& c, MapReader& r, const char* recipient) {
    const RoutingDecision d = route(c, r, recipient);
    if (d.action != Action::tempfail) return 20;
    if (d.detail.find("data.mdb") == std::string::npos) return 21;
    return 0;
}

}  // namespace

TEST_CASE("a data.mdb replaced by a truncated copy is tempfail for an open reader, not SIGBUS") {
    FaultMap m;
    const std::size_t size = GENERATE(8192, 12288, 4096 + 100);
    REQUIRE(m.data_size() > 4 * 4096);
    INFO("truncated to " << size << " bytes of " << m.data_size());
    CHECK(in_child([&] {
              MapReader reader(m.config.map_path);
              if (route(m.config, reader, "ann@contoso.com").action != Action::rewrite) return 10;
              m.replace_with_prefix(size);
              // Within the second the reader may still answer from the file it has open (the old
              // inode, whole): either answer is fine, dying is not.
              const Action first = route(m.config, reader, "ann@contoso.com").action;
              if (first != Action::rewrite && first != Action::tempfail) return 15;
              reader.recheck();  // as if the second had passed
              if (int rc = expect_tempfail_naming_file(m.config, reader, "ann@contoso.com")) return rc;
              // And again: the daemon keeps answering, it does not die at the second lookup.
              if (route(m.config, reader, "bob@contoso.com").action != Action::tempfail) return 30;
              return 0;
          }) == 0);
}

TEST_CASE("a reader opening a truncated map answers tempfail, and the restored map routes again") {
    FaultMap m;
    const std::string good = m.dir.file("good.mdb");
    std::filesystem::copy_file(m.data_file(), good);
    m.replace_with_prefix(8192);
    CHECK(in_child([&] {
              MapReader reader(m.config.map_path);
              if (int rc = expect_tempfail_naming_file(m.config, reader, "ann@contoso.com")) return rc;
              // Not a map problem: foreign domains are not touched.
              if (route(m.config, reader, "x@example.org").action != Action::foreign) return 30;
              std::filesystem::rename(good, m.data_file());
              if (route(m.config, reader, "ann@contoso.com").action != Action::rewrite) return 31;
              return 0;
          }) == 0);
}

TEST_CASE("a data.mdb truncated in place (same inode) is caught by the periodic check") {
    FaultMap m;
    CHECK(in_child([&] {
              MapReader reader(m.config.map_path);
              if (route(m.config, reader, "ann@contoso.com").action != Action::rewrite) return 10;
              if (::truncate(m.data_file().c_str(), 8192) != 0) return 11;
              // The check runs at most once a second; a lookup after that must not touch the
              // missing pages. (Within that second a lookup may: see map_reader.cpp.)
              std::this_thread::sleep_for(std::chrono::milliseconds(1100));
              if (int rc = expect_tempfail_naming_file(m.config, reader, "ann@contoso.com")) return rc;
              MapReader fresh(m.config.map_path);
              if (int rc = expect_tempfail_naming_file(m.config, fresh, "bob@contoso.com")) return 30 + rc;
              return 0;
          }) == 0);
}

namespace {

// `cp FROM data.mdb`: the bytes of FROM written over data.mdb in place, its inode kept.
void copy_over_in_place(const std::string& from, const std::string& to) {
    std::ifstream in(from, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(to, std::ios::binary | std::ios::trunc) << bytes;
}

// A copy of the map's directory, then one commit on the copy for each of ann's `states`: a map
// as many commits ahead of the live one. Returns the copy's directory.
std::string copy_ahead(const FaultMap& m, std::initializer_list<const char*> states) {
    const std::string other = m.dir.file("other");
    std::filesystem::copy(m.config.map_path, other);
    const std::string other_config = m.dir.write("other.ini", test::standard_config_text(other));
    for (const char* state : states) REQUIRE(test::run_tool(other_config, {"set", "ann@contoso.com", state}).status == 0);
    return other;
}

}  // namespace

TEST_CASE("a data.mdb copied over in place is tempfail at once, then read whole once let go") {
    // Found by an admin walk-through: `cp backup/data.mdb map/data.mdb` under running daemons
    // kept the inode, so they went on answering from the copy's previous commit (the empty map
    // an import began as, half of the time), silently and until restarted, while coexist-map
    // refused the map and said the daemons would let go.
    FaultMap m;
    const std::string backup = m.dir.file("backup.mdb");
    std::filesystem::copy_file(m.data_file(), backup);  // bob dual, ann migrated
    // One commit after the backup, then two: the copy's previous commit has either parity.
    const int commits_after = GENERATE(1, 2);
    for (int i = 0; i < commits_after; ++i)
        REQUIRE(test::run_tool(m.config_file, {"set", "ann@contoso.com", i % 2 ? "migrated" : "source"}).status == 0);
    CHECK(in_child([&] {
              MapReader reader(m.config.map_path);
              const Action live = commits_after == 1 ? Action::relay : Action::rewrite;
              if (route(m.config, reader, "ann@contoso.com").action != live) return 10;
              copy_over_in_place(backup, m.data_file());
              // No look at the files needed: the snapshot itself is older than lock.mdb's id.
              if (int rc = expect_tempfail_naming_file(m.config, reader, "bob@contoso.com")) return rc;
              // The look that refusal asked for lets go of the map (the reader's lookups defer
              // meanwhile)...
              if (int rc = expect_tempfail_naming_file(m.config, reader, "ann@contoso.com")) return 40 + rc;
              // ...and, nothing else having the map open, the next one opens it again as the
              // first, taking its ids from the file: the copy is read at its newest commit.
              reader.recheck();
              if (route(m.config, reader, "bob@contoso.com").action != Action::dual) return 30;
              if (route(m.config, reader, "ann@contoso.com").action != Action::rewrite) return 31;
              return 0;
          }) == 0);
}

TEST_CASE("a data.mdb copied in place one commit ahead of lock.mdb is refused at the second look") {
    // A commit in flight looks one ahead for an instant; a copy made one commit later than the
    // live map looks so at every look, and LMDB would read the copy's previous commit.
    FaultMap m;
    const std::string other = copy_ahead(m, {"source"});
    CHECK(in_child([&] {
              MapReader reader(m.config.map_path);
              if (route(m.config, reader, "ann@contoso.com").action != Action::rewrite) return 10;
              copy_over_in_place(other + "/data.mdb", m.data_file());
              reader.recheck();
              (void)route(m.config, reader, "ann@contoso.com");  // the first look: maybe a commit in flight
              reader.recheck();
              if (int rc = expect_tempfail_naming_file(m.config, reader, "bob@contoso.com")) return rc;
              reader.recheck();
              if (route(m.config, reader, "ann@contoso.com").action != Action::relay) return 30;
              return 0;
          }) == 0);
}

TEST_CASE("a data.mdb copied in place more than one commit ahead of lock.mdb is refused at once") {
    // Walk-through: a copy three commits ahead was read at the commit of lock.mdb's parity (one
    // where ann was on the source) for most of a second, until the next look.
    FaultMap m;
    const std::string other = copy_ahead(m, {"source", "migrated"});
    CHECK(in_child([&] {
              MapReader reader(m.config.map_path);
              if (route(m.config, reader, "ann@contoso.com").action != Action::rewrite) return 10;
              copy_over_in_place(other + "/data.mdb", m.data_file());
              if (int rc = expect_tempfail_naming_file(m.config, reader, "ann@contoso.com")) return rc;
              return 0;
          }) == 0);
}

TEST_CASE("MapStore refuses a truncated map, read-only and read-write, with MapUnavailable") {
    FaultMap m;
    m.replace_with_prefix(8192);
    for (auto mode : {MapStore::Mode::read_only, MapStore::Mode::read_write, MapStore::Mode::create}) {
        CHECK(in_child([&] {
                  try {
                      MapStore store(m.config.map_path, m.config.map_size, mode);
                      std::size_t users = 0;
                      store.read([&](MapTxn& t) {
                          t.for_each_user([&](std::string_view, const UserRecord&) { return ++users, true; });
                      });
                      return 10;
                  } catch (const MapUnavailable& e) {
                      return std::string(e.what()).find("data.mdb") == std::string::npos ? 11 : 0;
                  }
              }) == 0);
    }
}

TEST_CASE("an emptied or deleted data.mdb is said to be no map, for readers and writers alike") {
    FaultMap m;
    const auto unavailable_saying = [&](MapStore::Mode mode, const char* text) {
        return in_child([&] {
            try {
                MapStore store(m.config.map_path, m.config.map_size, mode);
                return 10;
            } catch (const MapUnavailable& e) {
                return std::string(e.what()).find(text) == std::string::npos ? 11 : 0;
            }
        });
    };
    const auto reader_tempfails_saying = [&](const char* text) {
        return in_child([&] {
            MapReader reader(m.config.map_path);
            const RoutingDecision d = route(m.config, reader, "ann@contoso.com");
            if (d.action != Action::tempfail) return 20;
            return d.detail.find(text) == std::string::npos ? 21 : 0;
        });
    };
    SECTION("0 bytes: LMDB's read-only open says only \"Bad file descriptor\"") {
        std::filesystem::resize_file(m.data_file(), 0);
        CHECK(unavailable_saying(MapStore::Mode::read_only, "data.mdb is empty (0 bytes)") == 0);
        CHECK(reader_tempfails_saying("data.mdb is empty (0 bytes)") == 0);
    }
    SECTION("deleted: a writer's open makes a new, empty LMDB file, which holds no coexist map") {
        std::filesystem::remove(m.data_file());
        CHECK(unavailable_saying(MapStore::Mode::read_write, "holds no coexist map") == 0);
        REQUIRE(std::filesystem::exists(m.data_file()));
        CHECK(unavailable_saying(MapStore::Mode::read_only, "holds no coexist map") == 0);
        CHECK(reader_tempfails_saying("holds no coexist map") == 0);
        // init is the one command that starts a map there.
        CHECK(unavailable_saying(MapStore::Mode::create, "holds no coexist map") == 10);
    }
}

TEST_CASE("every coexist-map command exits 3 on a truncated map, naming the file; none dies of a signal") {
    FaultMap m;
    m.replace_with_prefix(8192);
    const std::string csv = m.dir.write("one.csv", "address,state\nnew@contoso.com,source\n");
    const std::vector<std::vector<std::string>> commands = {
        {"stats"}, {"set", "ann@contoso.com", "source"}, {"route", "ann@contoso.com"},
        {"get", "ann@contoso.com"}, {"list"}, {"export"}, {"history", "ann@contoso.com"},
        {"import", csv}, {"remove", "bob@contoso.com"}, {"alias", "b@contoso.com", "bob@contoso.com"},
        {"unalias", "anna@contoso.com"}, {"init"}};
    for (const auto& args : commands) {
        const auto r = test::run_tool(m.config_file, args);
        INFO(args[0] << ": " << r.out);
        CHECK(r.status == 3);  // -1: killed by a signal
        CHECK(r.out.find("data.mdb") != std::string::npos);
    }
}

namespace {

// As nobody:nogroup, the daemons' side: 0 when the lookup routes ann as the map says.
int lookup_as_nobody(const Config& c) {
    return in_child([&] {
        if (!test::become_nobody()) return 40;
        MapReader reader(c.map_path);
        const RoutingDecision d = route(c, reader, "ann@contoso.com");
        return d.action == Action::rewrite ? 0 : 41;
    });
}

}  // namespace

TEST_CASE("read-only commands as root with lock.mdb missing leave the map usable by the daemons' user") {
    if (::geteuid() != 0) {
        WARN("not root: skipped");
        return;
    }
    FaultMap m;
    REQUIRE(::chmod(m.dir.path().c_str(), 0755) == 0);
    REQUIRE(::chmod(m.config_file.c_str(), 0644) == 0);
    REQUIRE(::chown(m.config.map_path.c_str(), 0, test::kNogroup) == 0);
    REQUIRE(::chmod(m.config.map_path.c_str(), 0750) == 0);
    for (const char* f : {"/data.mdb", "/lock.mdb"})
        REQUIRE(::chown((m.config.map_path + f).c_str(), 0, test::kNogroup) == 0);
    REQUIRE(lookup_as_nobody(m.config) == 0);

    const std::vector<std::vector<std::string>> commands = {
        {"route", "ann@contoso.com"}, {"get", "ann@contoso.com"}, {"list"}, {"stats"}, {"export"},
        {"history", "ann@contoso.com"}, {"import", "--dry-run", m.dir.file("users.csv")}};
    for (const auto& args : commands) {
        INFO(args[0]);
        REQUIRE(::unlink(m.lock_file().c_str()) == 0);
        const auto r = test::run_tool(m.config_file, args);
        INFO(r.out);
        CHECK(r.status == 0);
        struct stat lock{};
        REQUIRE(::stat(m.lock_file().c_str(), &lock) == 0);
        CHECK(lock.st_gid == test::kNogroup);
        CHECK((lock.st_mode & 0777) == 0660);
        CHECK(lookup_as_nobody(m.config) == 0);
    }
}

TEST_CASE("init as root makes the directory the daemons' group, setgid, and the daemons can read it") {
    if (::geteuid() != 0) {
        WARN("not root: skipped");
        return;
    }
    test::TempDir dir;
    REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
    const std::string config_file =
        dir.write("coexist.ini", test::standard_config_text(dir.file("map")) + "\n[milter]\nuser = nobody\n");
    REQUIRE(::chmod(config_file.c_str(), 0644) == 0);
    const auto r = test::run_tool(config_file, {"init"});
    INFO(r.out);
    REQUIRE(r.status == 0);
    REQUIRE(test::run_tool(config_file, {"set", "ann@contoso.com", "migrated"}).status == 0);
    struct stat d{};
    REQUIRE(::stat(dir.file("map").c_str(), &d) == 0);
    CHECK(d.st_gid == test::kNogroup);
    CHECK((d.st_mode & 02000) != 0);
    CHECK((d.st_mode & 0777) == 0750);
    CHECK(lookup_as_nobody(load_config(config_file)) == 0);
}

TEST_CASE("a lock.mdb deleted under a running reader: the reader follows every later commit") {
    // Found by an admin walk-through: after `rm lock.mdb` the daemons kept the deleted lock file
    // open, coexist-map made a new one, and lookups answered from a stale view (a rollback with
    // `set ... source` still routed to the new system).
    FaultMap m;
    CHECK(in_child([&] {
              MapReader reader(m.config.map_path);
              if (route(m.config, reader, "ann@contoso.com").action != Action::rewrite) return 10;
              std::filesystem::remove(m.lock_file());
              const char* states[] = {"source", "migrated", "source", "migrated"};
              const Action expected[] = {Action::relay, Action::rewrite, Action::relay, Action::rewrite};
              for (int i = 0; i < 4; ++i) {
                  if (test::run_tool(m.config_file, {"set", "ann@contoso.com", states[i]}).status != 0) return 20 + i;
                  reader.recheck();  // as if the second had passed
                  if (route(m.config, reader, "ann@contoso.com").action != expected[i]) return 30 + i;
              }
              return 0;
          }) == 0);
}

namespace {

// The map handed to its owner as on a directory-fed relay (chown -R coexist-sync), nobody
// standing in for coexist-sync; and a root-only file the owner must not be able to reach.
struct OwnedByNobody {
    FaultMap m;
    std::string victim = m.dir.file("victim");
    OwnedByNobody() {
        REQUIRE(::chmod(m.dir.path().c_str(), 0755) == 0);
        REQUIRE(::chmod(m.config_file.c_str(), 0644) == 0);
        for (const std::string& f : {m.config.map_path, m.data_file(), m.lock_file()})
            REQUIRE(::chown(f.c_str(), test::kNobody, test::kNogroup) == 0);
        m.dir.write("victim", "root-secret\n");
        REQUIRE(::chmod(victim.c_str(), 0600) == 0);
    }
    std::string victim_text() const {
        std::ifstream in(victim, std::ios::binary);
        return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }
};

}  // namespace

TEST_CASE("root never follows a symbolic link the map's owner put in place of data.mdb or lock.mdb") {
    // Found by a hostile test: coexist-sync owns the map directory, so it can replace lock.mdb by a
    // link to /etc/shadow; the next root coexist-map (even `stats`) had LMDB write its lock header
    // into the target and gave it the map's group and mode 0660.
    if (::geteuid() != 0) {
        WARN("not root: skipped");
        return;
    }
    OwnedByNobody o;
    const std::string target = GENERATE(std::string("lock.mdb"), std::string("data.mdb"));
    INFO(target);
    const std::string link = o.m.config.map_path + "/" + target;
    REQUIRE(::unlink(link.c_str()) == 0);
    REQUIRE(::symlink(o.victim.c_str(), link.c_str()) == 0);
    for (const std::vector<std::string>& args : {std::vector<std::string>{"stats"},
                                                 std::vector<std::string>{"set", "ann@contoso.com", "source"}}) {
        INFO(args[0]);
        const auto r = test::run_tool(o.m.config_file, args);
        INFO(r.out);
        CHECK(r.status == 3);
        CHECK(r.out.find(target + " is not a regular file but a symbolic link") != std::string::npos);
        struct stat v{};
        REQUIRE(::stat(o.victim.c_str(), &v) == 0);
        CHECK(v.st_uid == 0);
        CHECK(v.st_gid == 0);
        CHECK((v.st_mode & 07777) == 0600);
        CHECK(o.victim_text() == "root-secret\n");
    }
    // A daemon's reader refuses it too: a temporary failure, not a lookup in whatever it points at.
    MapReader reader(o.m.config.map_path);
    CHECK(route(o.m.config, reader, "ann@contoso.com").action == Action::tempfail);
}

TEST_CASE("root opens a map directory that another user owns as that user") {
    // The link checked above could be swapped in between that check and LMDB's open(2); as the
    // owner, root's open reaches only what the owner could write anyway.
    if (::geteuid() != 0) {
        WARN("not root: skipped");
        return;
    }
    OwnedByNobody o;
    {
        const MapOwnerIdentity as_owner(o.m.config.map_path);
        REQUIRE(as_owner.acting_as() == std::optional<uid_t>(test::kNobody));
        errno = 0;
        CHECK(::open(o.victim.c_str(), O_WRONLY | O_CLOEXEC) == -1);
        CHECK(errno == EACCES);
    }
    // Nor through root's supplementary groups: a file group root may write stays out of reach.
    REQUIRE(::chmod(o.victim.c_str(), 0660) == 0);
    CHECK(in_child([&] {
              const gid_t root_group = 0;
              if (::setgroups(1, &root_group) != 0) return 50;
              {
                  const MapOwnerIdentity as_owner(o.m.config.map_path);
                  if (::open(o.victim.c_str(), O_WRONLY | O_CLOEXEC) != -1 || errno != EACCES) return 51;
              }
              // Root's groups are back afterwards.
              gid_t groups[4]{};
              return ::getgroups(4, groups) == 1 && groups[0] == 0 ? 0 : 52;
          }) == 0);
    const int fd = ::open(o.victim.c_str(), O_WRONLY | O_CLOEXEC);  // root again, with every capability
    CHECK(fd >= 0);
    if (fd >= 0) ::close(fd);
    // A lock.mdb that LMDB makes for a root coexist-map is the owner's, usable by the daemons' group.
    REQUIRE(::unlink(o.m.lock_file().c_str()) == 0);
    const auto r = test::run_tool(o.m.config_file, {"set", "ann@contoso.com", "source"});
    INFO(r.out);
    CHECK(r.status == 0);
    struct stat lock{};
    REQUIRE(::stat(o.m.lock_file().c_str(), &lock) == 0);
    CHECK(lock.st_uid == test::kNobody);
    CHECK(lock.st_gid == test::kNogroup);
    CHECK((lock.st_mode & 0777) == 0660);
    // The daemons' user reads the change.
    CHECK(in_child([&] {
              if (!test::become_nobody()) return 40;
              MapReader reader(o.m.config.map_path);
              return route(o.m.config, reader, "ann@contoso.com").action == Action::relay ? 0 : 41;
          }) == 0);
}

TEST_CASE("a write that fails part way (disk full) names data.mdb, exits 3 and leaves the map as it was") {
    FaultMap m;
    const std::string before = test::run_tool(m.config_file, {"export"}).out;
    std::string csv = "address,state\n";
    for (int i = 0; i < 20000; ++i) csv += "many" + std::to_string(i) + "@contoso.com,migrated\n";
    const std::string csv_file = m.dir.write("many.csv", csv);
    // The file may not grow past its size now (ulimit -f, in 512-byte blocks; SIGXFSZ ignored):
    // LMDB's pwrite beyond it comes back short, as on a full disk.
    const std::uintmax_t blocks = (m.data_size() + 511) / 512;
    const std::string out_file = m.dir.file("import.out");
    const std::string cmd = "sh -c \"trap '' XFSZ; ulimit -f " + std::to_string(blocks) + "; exec " +
                            COEXIST_MAP_BINARY + " -c '" + m.config_file + "' import '" + csv_file + "'\" > '" +
                            out_file + "' 2>&1";
    const int st = std::system(cmd.c_str());
    std::ifstream in(out_file);
    const std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(out);
    REQUIRE(WIFEXITED(st));
    CHECK(WEXITSTATUS(st) == 3);
    CHECK(out.find(m.data_file()) != std::string::npos);
    CHECK(out.find("the map is as it was") != std::string::npos);
    CHECK(test::run_tool(m.config_file, {"export"}).out == before);
}
