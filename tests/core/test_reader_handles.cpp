// The read transaction handles the daemons keep per thread (design 13.3): a thread that exits
// gives its reader slot back, a replaced map is followed by threads old and new, and many more
// threads than LMDB's default reader table (126) read while coexist-map writes.
#include <catch2/catch.hpp>

#include <fmt/format.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <sstream>
#include <string_view>
#include <thread>
#include <vector>

#include "coexist/map_reader.hpp"
#include "coexist/map_store.hpp"
#include "coexist/route.hpp"
#include "commands.hpp"
#include "fixture.hpp"
#include "lmdb.hpp"

using namespace coexist;

namespace {

// Reader slots this process holds in the map's lock.mdb, as `mdb_stat -r` (another process)
// lists them; -1 when it cannot run.
int reader_slots_of_this_process(const std::string& map_dir) {
    FILE* p = ::popen(("mdb_stat -r '" + map_dir + "' 2>/dev/null").c_str(), "r");
    if (!p) return -1;
    const std::string me = std::to_string(::getpid());
    int slots = 0;
    bool listed = false;
    char line[512];
    while (std::fgets(line, sizeof line, p)) {
        listed = listed || std::string_view(line).starts_with("Reader Table Status");
        std::istringstream fields(line);
        std::string pid;
        fields >> pid;
        if (pid == me) ++slots;
    }
    ::pclose(p);  // mdb_stat -r exits 1 after a good listing when no database is named
    return listed ? slots : -1;
}

struct Map {
    test::TempDir dir;
    std::string config_file = dir.write("c.ini", test::standard_config_text(dir.file("map")));
    Config config = load_config(config_file);
    Map() {
        std::ostringstream out;
        tool::init(config, out);
        tool::set(config, "ann@contoso.com", "migrated", std::nullopt, std::nullopt, out);
        tool::set(config, "bob@contoso.com", "source", std::nullopt, std::nullopt, out);
    }
    void set(const std::string& address, const std::string& state) {
        std::ostringstream out;
        tool::set(config, address, state, std::nullopt, std::nullopt, out);
    }
};

// A copy of `m`'s data.mdb with ann rolled back to source, beside the map: what `mv` puts in
// place of data.mdb. Written in this process, so before any MapReader of it is made.
std::string rolled_back_copy(Map& m) {
    const std::string saved = m.dir.file("saved.mdb"), other = m.dir.file("other.mdb");
    std::filesystem::copy_file(m.config.map_path + "/data.mdb", saved);
    m.set("ann@contoso.com", "source");
    std::filesystem::copy_file(m.config.map_path + "/data.mdb", other);
    std::filesystem::rename(saved, m.config.map_path + "/data.mdb");
    return other;
}

}  // namespace

TEST_CASE("threads that read and exit give their reader slots back; the map replaced later is followed") {
    Map m;
    const std::string other = rolled_back_copy(m);  // before the reader: one environment per process
    MapReader reader(m.config.map_path);
    REQUIRE(route(m.config, reader, "ann@contoso.com").action == Action::rewrite);
    const int before = reader_slots_of_this_process(m.config.map_path);
    REQUIRE(before == 1);  // this thread's kept handle

    // Twenty threads, one decision each, then gone (as libmilter's idle workers go).
    for (int round = 0; round < 20; ++round) {
        Action a = Action::tempfail;
        std::thread([&] { a = route(m.config, reader, "ann@contoso.com").action; }).join();
        CHECK(a == Action::rewrite);
    }
    CHECK(reader_slots_of_this_process(m.config.map_path) == before);

    // A thread that read the map, then exits after it was replaced: its handle was aborted with
    // the old environment, and every thread sees the new map.
    std::promise<void> read, replaced;
    Action first = Action::tempfail;
    std::thread exiting([&, go = replaced.get_future()]() mutable {
        first = route(m.config, reader, "ann@contoso.com").action;
        read.set_value();
        go.wait();
    });
    read.get_future().wait();
    CHECK(reader_slots_of_this_process(m.config.map_path) == before + 1);
    std::filesystem::rename(other, m.config.map_path + "/data.mdb");
    reader.recheck();  // as if the second had passed
    CHECK(route(m.config, reader, "ann@contoso.com").action == Action::relay);  // re-opened here
    replaced.set_value();
    exiting.join();
    CHECK(first == Action::rewrite);
    Action later = Action::tempfail;
    std::thread([&] { later = route(m.config, reader, "ann@contoso.com").action; }).join();
    CHECK(later == Action::relay);
    CHECK(reader_slots_of_this_process(m.config.map_path) == before);
}

TEST_CASE("a thread keeping a handle while the map is replaced follows the new map at its next decision") {
    Map m;
    const std::string other = rolled_back_copy(m);
    MapReader reader(m.config.map_path);
    std::promise<void> first_done, replaced;
    Action before = Action::tempfail, after = Action::tempfail;
    std::thread worker([&, go = replaced.get_future()]() mutable {
        before = route(m.config, reader, "ann@contoso.com").action;  // keeps a reset handle
        first_done.set_value();
        go.wait();
        after = route(m.config, reader, "ann@contoso.com").action;  // on the new environment
    });
    first_done.get_future().wait();
    std::filesystem::rename(other, m.config.map_path + "/data.mdb");
    reader.recheck();
    CHECK(route(m.config, reader, "ann@contoso.com").action == Action::relay);
    replaced.set_value();
    worker.join();
    CHECK(before == Action::rewrite);
    CHECK(after == Action::relay);
}

TEST_CASE("more threads than LMDB's default reader table read while coexist-map writes: no error, no half change") {
    Map m;
    MapReader reader(m.config.map_path);
    REQUIRE(route(m.config, reader, "ann@contoso.com").action == Action::rewrite);
    constexpr int kThreads = 150;  // LMDB's default maxreaders is 126
    std::atomic<bool> measured{false}, done{false};
    std::atomic<int> started{0};
    std::atomic<long> lookups{0}, errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&] {
            // Bounded: each thread stops when the writer is done or at 20k decisions. Each
            // pauses 5 ms between lookups (still about 30,000 lookups a second in all): 150
            // threads spinning on 2 cores starved the writer's processes (24 s, minutes under
            // ASan) without reading any more concurrently.
            for (long n = 0; n == 0 || (!done && n < 20000); ++n) {
                if (n > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
                const RoutingDecision a = route(m.config, reader, "ann@contoso.com");
                const RoutingDecision b = route(m.config, reader, "bob@contoso.com");
                lookups += 2;
                if (a.action != Action::rewrite && a.action != Action::relay) ++errors;
                if (b.action != Action::rewrite && b.action != Action::relay) ++errors;
                if (n == 0) {  // every thread holds its handle while the slots are counted
                    ++started;
                    while (!measured) std::this_thread::yield();
                }
            }
        });
    while (started < kThreads) std::this_thread::yield();
    const int slots_in_use = reader_slots_of_this_process(m.config.map_path);
    measured = true;
    // The writer: another process, ten commits flipping both users, none waiting on the readers.
    int writes = 0;
    for (int i = 0; i < 10; ++i) {
        const auto r = test::run_tool(m.config_file, {"set", i % 2 ? "ann@contoso.com" : "bob@contoso.com",
                                                      i % 4 < 2 ? "migrated" : "source"});
        INFO(r.out);
        CHECK(r.status == 0);
        writes += r.status == 0;
    }
    done = true;
    for (auto& t : threads) t.join();
    CHECK(writes == 10);
    CHECK(errors == 0);
    CHECK(lookups >= 2L * kThreads);
    CHECK(slots_in_use >= kThreads);
    CHECK(slots_in_use <= kThreads + 1);
    // The last commits' states (both migrated), seen by the next decision.
    CHECK(route(m.config, reader, "ann@contoso.com").action == Action::rewrite);
    CHECK(route(m.config, reader, "bob@contoso.com").action == Action::rewrite);
    CHECK(reader_slots_of_this_process(m.config.map_path) == 1);
}

TEST_CASE("a map replaced by rename again and again while threads decide: only whole answers, then the last map") {
    Map m;
    const std::string other = rolled_back_copy(m);  // ann: source
    const std::string original = m.dir.file("original.mdb");  // ann: migrated
    std::filesystem::copy_file(m.config.map_path + "/data.mdb", original);
    MapReader reader(m.config.map_path);
    std::atomic<bool> done{false};
    std::atomic<long> lookups{0}, errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (long n = 0; !done && n < 2000000; ++n) {  // bounded
                const Action a = route(m.config, reader, "ann@contoso.com").action;
                ++lookups;
                if (a != Action::rewrite && a != Action::relay) ++errors;
            }
        });
    // Forty replacements, each followed by a recheck (the second passing) and decisions of this
    // thread, so that the environment is closed and re-opened under the others' lookups.
    for (int i = 0; i < 40; ++i) {
        const std::string tmp = m.dir.file("next.mdb");
        std::filesystem::copy_file(i % 2 ? original : other, tmp);
        std::filesystem::rename(tmp, m.config.map_path + "/data.mdb");
        reader.recheck();
        const Action expected = i % 2 ? Action::rewrite : Action::relay;
        CHECK(route(m.config, reader, "ann@contoso.com").action == expected);
    }
    done = true;
    for (auto& t : threads) t.join();
    CHECK(errors == 0);
    CHECK(lookups > 0);
    CHECK(route(m.config, reader, "ann@contoso.com").action == Action::rewrite);
}

namespace {

// Another process with the map open (lock.mdb held), as a second daemon is; lets go when
// release() is called or when it goes out of scope.
class LockHolder {
public:
    explicit LockHolder(const std::string& map_path) {
        REQUIRE(::pipe(ready_) == 0);
        REQUIRE(::pipe(release_) == 0);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            int status = 1;
            try {
                Environment env(map_path, MDB_RDONLY, 0);
                status = ::write(ready_[1], "x", 1) == 1 ? 0 : 1;
                char c;
                (void)!::read(release_[0], &c, 1);
            } catch (...) {
            }
            ::_exit(status);
        }
        char c;
        REQUIRE(::read(ready_[0], &c, 1) == 1);
    }
    ~LockHolder() {
        if (pid_ > 0) release();
        for (int fd : {ready_[0], ready_[1], release_[0], release_[1]}) ::close(fd);
    }
    LockHolder(const LockHolder&) = delete;
    LockHolder& operator=(const LockHolder&) = delete;
    // Returns the holder's exit status (0: it had the map open and let go).
    int release() {
        (void)!::write(release_[1], "x", 1);
        int status = -1;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return status;
    }

private:
    int ready_[2] = {-1, -1}, release_[2] = {-1, -1};
    pid_t pid_ = -1;
};

}  // namespace

TEST_CASE("a data.mdb renamed into place while another process holds lock.mdb: tempfail and no write, "
          "then the new map once none holds it") {
    Map m;  // ann migrated
    m.set("ann@contoso.com", "source");
    m.set("ann@contoso.com", "migrated");
    // The copy's last commit makes ann migrated; the one before it had her at source.
    const std::string staged = m.dir.file("staged.mdb");
    std::filesystem::copy_file(m.config.map_path + "/data.mdb", staged);
    m.set("bob@contoso.com", "migrated");  // lock.mdb's id is now one past the copy's: the other parity

    LockHolder holder(m.config.map_path);
    MapReader reader(m.config.map_path);
    REQUIRE(route(m.config, reader, "bob@contoso.com").action == Action::rewrite);

    std::filesystem::rename(staged, m.config.map_path + "/data.mdb");
    reader.recheck();
    // LMDB would start from the copy's previous commit (ann at source): relayed to the old system.
    const RoutingDecision d = route(m.config, reader, "ann@contoso.com");
    CHECK(d.action == Action::tempfail);
    CHECK(d.detail.find("data.mdb was replaced while another program kept the map open") != std::string::npos);
    // A write would store that previous commit as the newest: refused, nothing written.
    const auto w = test::run_tool(m.config_file, {"set", "carol@contoso.com", "migrated"});
    CHECK(w.status == 3);
    CHECK(w.out.find("was replaced while another program kept the map open") != std::string::npos);

    // Once no other process has it open, the next to open it takes the ids from the file.
    CHECK(holder.release() == 0);
    reader.recheck();
    CHECK(route(m.config, reader, "ann@contoso.com").action == Action::rewrite);
    CHECK(route(m.config, reader, "bob@contoso.com").action == Action::relay);
    CHECK(route(m.config, reader, "carol@contoso.com").action != Action::rewrite);
}

TEST_CASE("a data.mdb renamed in exactly one commit ahead of the held lock.mdb is refused too") {
    Map m;  // ann migrated
    const std::string saved = m.dir.file("saved.mdb"), staged = m.dir.file("staged.mdb");
    std::filesystem::copy_file(m.config.map_path + "/data.mdb", saved);   // commit N: ann migrated
    m.set("ann@contoso.com", "source");
    std::filesystem::copy_file(m.config.map_path + "/data.mdb", staged);  // N + 1: ann at source
    std::filesystem::rename(saved, m.config.map_path + "/data.mdb");
    REQUIRE(test::run_tool(m.config_file, {"list"}).status == 0);  // alone: lock.mdb back at N

    LockHolder holder(m.config.map_path);
    MapReader reader(m.config.map_path);
    REQUIRE(route(m.config, reader, "ann@contoso.com").action == Action::rewrite);
    std::filesystem::rename(staged, m.config.map_path + "/data.mdb");
    reader.recheck();
    // Read at lock.mdb's N, the copy would answer its previous commit: ann still migrated.
    CHECK(route(m.config, reader, "ann@contoso.com").action == Action::tempfail);
    CHECK(test::run_tool(m.config_file, {"set", "carol@contoso.com", "migrated"}).status == 3);
    CHECK(holder.release() == 0);
    reader.recheck();
    CHECK(route(m.config, reader, "ann@contoso.com").action == Action::relay);
}

TEST_CASE("a long-lived writer whose data.mdb was renamed over writes nothing to the old file") {
    Map m;
    const std::string other = rolled_back_copy(m);  // ann: source
    MapStore store(m.config.map_path, 0, MapStore::Mode::read_write);
    store.write(ChangeContext{"test", "set", 1}, [](MapTxn&) {});  // the file it opened: fine
    CHECK_FALSE(store.files_replaced());
    std::filesystem::rename(other, m.config.map_path + "/data.mdb");
    // What sync --follow looks at while it waits, to let go without waiting for a write.
    CHECK(store.files_replaced());
    bool wrote = false;
    CHECK_THROWS_WITH(store.write(ChangeContext{"test", "set", 2}, [&](MapTxn&) { wrote = true; }),
                      Catch::Contains("data.mdb or lock.mdb was replaced or removed since this program opened the map"));
    CHECK_FALSE(wrote);
}

TEST_CASE("a long-lived writer whose lock.mdb was removed writes nothing under a lock others no longer take") {
    Map m;
    MapStore store(m.config.map_path, 0, MapStore::Mode::read_write);
    store.write(ChangeContext{"test", "set", 1}, [](MapTxn&) {});
    // Any other program now makes a lock.mdb of its own: two writers, two write locks.
    std::filesystem::remove(m.config.map_path + "/lock.mdb");
    CHECK(store.files_replaced());
    REQUIRE(test::run_tool(m.config_file, {"list"}).status == 0);
    CHECK(store.files_replaced());
    bool wrote = false;
    CHECK_THROWS_WITH(store.write(ChangeContext{"test", "set", 2}, [&](MapTxn&) { wrote = true; }),
                      Catch::Contains("data.mdb or lock.mdb was replaced or removed since this program opened the map"));
    CHECK_FALSE(wrote);
}

namespace {

// A process deciding for ann@contoso.com without pause, as a busy daemon does, until it sees
// `wanted`; exits 0 then, 1 when `seconds` pass first. It says when it has seen `ready_on`.
pid_t decide_until(const Config& config, Action ready_on, Action wanted, int ready_fd, int seconds) {
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    int status = 1;
    try {
        MapReader reader(config.map_path);
        bool ready = false;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
        while (std::chrono::steady_clock::now() < deadline) {
            const Action a = route(config, reader, "ann@contoso.com").action;
            if (!ready && a == ready_on) ready = ::write(ready_fd, "x", 1) == 1;
            if (ready && a == wanted) {
                status = 0;
                break;
            }
        }
    } catch (...) {
    }
    ::_exit(status);
}

}  // namespace

TEST_CASE("two busy processes let go of a data.mdb renamed in alone: the map is served again within seconds") {
    Map m;  // ann migrated
    const std::string other = rolled_back_copy(m);  // ann: source, one commit ahead of the map
    // The live map moves on, so the copy is behind lock.mdb's id, as a restored copy usually is.
    for (int i = 0; i < 3; ++i) m.set("bob@contoso.com", i % 2 ? "source" : "migrated");
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    // Each refused open holds lock.mdb for a moment; both trying at every lookup kept one of
    // them holding it at every instant, and the refusal lasted as long as the lookups did.
    const pid_t a = decide_until(m.config, Action::rewrite, Action::relay, ready[1], 30);
    const pid_t b = decide_until(m.config, Action::rewrite, Action::relay, ready[1], 30);
    char c;
    REQUIRE(::read(ready[0], &c, 1) == 1);
    REQUIRE(::read(ready[0], &c, 1) == 1);
    std::filesystem::rename(other, m.config.map_path + "/data.mdb");
    int status_a = -1, status_b = -1;
    ::waitpid(a, &status_a, 0);
    ::waitpid(b, &status_b, 0);
    ::close(ready[0]);
    ::close(ready[1]);
    CHECK(status_a == 0);
    CHECK(status_b == 0);
}

TEST_CASE("a map directory this process sees read-only is refused, not read without lock.mdb") {
    if (::geteuid() != 0) {
        WARN("not root: no mount namespace to make the map read-only");
        return;
    }
    Map m;
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // A private mount namespace where the map's directory is a read-only bind of itself, as
        // a renamed-in directory is to a daemon under ProtectSystem=strict.
        const char* dir = m.config.map_path.c_str();
        int status = 2;
        if (::unshare(CLONE_NEWNS) == 0 && ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
            ::mount(dir, dir, nullptr, MS_BIND, nullptr) == 0 &&
            ::mount(nullptr, dir, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0) {
            try {
                MapReader reader(m.config.map_path);
                const RoutingDecision d = route(m.config, reader, "ann@contoso.com");
                status = d.action == Action::tempfail && d.detail.find("read-only") != std::string::npos ? 0 : 1;
            } catch (...) {
                status = 3;
            }
        }
        ::_exit(status);
    }
    int status = -1;
    ::waitpid(pid, &status, 0);
    REQUIRE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 2) {
        WARN("no private mount namespace here (unshare or mount refused)");
        return;
    }
    CHECK(WEXITSTATUS(status) == 0);  // 1: read (the lookup answered from a lock-free reader)
}
