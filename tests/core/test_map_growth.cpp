// The map growing under its users (issue 10 defects 3 and 5, design 13.3) and crashed readers
// (defect 7): threads sharing one reader keep one environment and its locks while another
// process grows the map; a second writer waits and goes on; a dead reader's slot is reclaimed.
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <lmdb.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <future>
#include <thread>
#include <vector>

#include "coexist/map_reader.hpp"
#include "coexist/route.hpp"
#include "map_fault_fixture.hpp"

using namespace coexist;

namespace {

// A map that starts at the smallest size (map_size, the 0.1.0 name, is still accepted) so an
// import must grow it several times.
struct SmallMap {
    test::TempDir dir;
    std::string config_file;
    Config config;
    SmallMap() {
        const std::string text = test::standard_config_text(dir.file("map"));
        config_file = dir.write("c.ini", "[map]\npath = " + dir.file("map") + "\nmap_size = 1M\n" +
                                             text.substr(text.find("[routing]")));
        config = load_config(config_file);
        REQUIRE(test::run_tool(config_file, {"init"}).status == 0);
        REQUIRE(test::run_tool(config_file, {"set", "sentinel@contoso.com", "migrated"}).status == 0);
    }
    std::string big_csv(int users) const {
        std::ofstream csv(dir.file("big.csv"));
        csv << "address,state,batch,aliases\n";
        for (int i = 0; i < users; ++i) csv << "user" << i << "@contoso.com,migrated,big,alias" << i << "@contoso.com\n";
        return dir.file("big.csv");
    }
};

// The POSIX locks this process holds on `file` (LMDB's liveness locks on lock.mdb).
int locks_held_on(const std::string& file) {
    struct stat st{};
    if (::stat(file.c_str(), &st) != 0) return -1;
    std::ifstream locks("/proc/locks");
    std::string line;
    int held = 0;
    // fmt, not `" " + std::string`: GCC 12 -O3 gives a false -Wrestrict for that form.
    const std::string pid = fmt::format(" {} ", ::getpid());
    const std::string inode = fmt::format(":{} ", st.st_ino);
    while (std::getline(locks, line))
        if (line.find(pid) != std::string::npos && line.find(inode) != std::string::npos) ++held;
    return held;
}

}  // namespace

TEST_CASE("8 threads sharing a reader while another process grows the map: no error, no half import, locks kept") {
    SmallMap m;
    constexpr int kUsers = 60000;
    const std::string csv = m.big_csv(kUsers);
    const std::string last = fmt::format("alias{}@contoso.com", kUsers - 1);

    MapReader reader(m.config.map_path);
    REQUIRE(route(m.config, reader, "sentinel@contoso.com").action == Action::rewrite);
    REQUIRE(locks_held_on(m.config.map_path + "/lock.mdb") > 0);

    std::atomic<bool> done{false};
    std::atomic<long> lookups{0}, errors{0}, torn{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t)
        threads.emplace_back([&] {
            // Bounded: the import takes seconds; each thread stops when it ends or at 500k lookups.
            for (long n = 0; !done && n < 500000; ++n) {
                const RoutingDecision s = route(m.config, reader, "sentinel@contoso.com");
                const RoutingDecision f = route(m.config, reader, "user0@contoso.com");
                const RoutingDecision l = route(m.config, reader, last);
                lookups += 3;
                if (s.action != Action::rewrite) ++errors;
                for (const auto* d : {&f, &l})
                    if (d->action != Action::rewrite && d->action != Action::relay) ++errors;
                if (f.action == Action::rewrite && l.action != Action::rewrite) ++torn;  // half an import
            }
        });
    const auto result = test::run_tool(m.config_file, {"import", csv});
    done = true;
    for (auto& t : threads) t.join();
    INFO(result.out);
    REQUIRE(result.status == 0);
    CHECK(errors == 0);
    CHECK(torn == 0);
    CHECK(lookups > 0);
    CHECK(route(m.config, reader, last).address == fmt::format("user{}@o365.contoso.com", kUsers - 1));
    // Opening a second environment and closing the first drops every fcntl lock the process has on
    // lock.mdb; the next coexist-map would then be LMDB's exclusive opener and reset the reader table.
    CHECK(locks_held_on(m.config.map_path + "/lock.mdb") > 0);
}

TEST_CASE("a writer waiting behind an import that grows the map goes on instead of failing") {
    SmallMap m;
    const std::string csv = m.big_csv(60000);
    auto import = std::async(std::launch::async, [&] { return test::run_tool(m.config_file, {"import", csv}); });
    // Writers started while the import runs open the map at its old size, wait for the import's
    // write lock, and then find the map grown (MDB_MAP_RESIZED at mdb_txn_begin).
    std::vector<std::future<test::ToolResult>> writers;
    for (int i = 0; i < 12; ++i) {
        writers.push_back(std::async(std::launch::async, [&, i] {
            return test::run_tool(m.config_file, {"set", fmt::format("w{}@contoso.com", i), "dual"});
        }));
        std::this_thread::sleep_for(std::chrono::milliseconds(150));  // spread over the import, not a check
    }
    const auto imported = import.get();
    INFO(imported.out);
    CHECK(imported.status == 0);
    for (auto& w : writers) {
        const auto r = w.get();
        INFO(r.out);
        CHECK(r.status == 0);
    }
    MapReader reader(m.config.map_path);
    CHECK(route(m.config, reader, "w11@contoso.com").action == Action::dual);
    CHECK(reader.user_count() == 60000 + 1 + 12);
}

namespace {

// Reader slots of `pid` in the map's reader table, as mdb_reader_list prints them.
int reader_slots_of(MDB_env* env, pid_t pid) {
    struct Ctx {
        std::string text;
    } ctx;
    mdb_reader_list(env, [](const char* msg, void* c) { static_cast<Ctx*>(c)->text += msg; return 0; }, &ctx);
    std::istringstream lines(ctx.text);
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) {
        std::istringstream fields(line);
        long p = 0;
        if (fields >> p && p == pid) ++n;
    }
    return n;
}

}  // namespace

TEST_CASE("a reader killed inside a read transaction: its slot is reclaimed at the next writer's open") {
    test::FaultMap m;
    // This process keeps the map open so the writer below is not LMDB's first opener (which
    // would reset the whole reader table anyway).
    MDB_env* env = nullptr;
    REQUIRE(mdb_env_create(&env) == 0);
    mdb_env_set_maxreaders(env, 1024);
    REQUIRE(mdb_env_open(env, m.config.map_path.c_str(), MDB_RDONLY | MDB_NOTLS, 0640) == 0);

    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    const pid_t child = ::fork();
    if (child == 0) {
        MDB_env* e = nullptr;
        MDB_txn* txn = nullptr;
        mdb_env_create(&e);
        mdb_env_set_maxreaders(e, 1024);
        if (mdb_env_open(e, m.config.map_path.c_str(), MDB_RDONLY | MDB_NOTLS, 0640) != 0 ||
            mdb_txn_begin(e, nullptr, MDB_RDONLY, &txn) != 0)
            ::_exit(1);
        (void)!::write(ready[1], "x", 1);
        for (;;) ::pause();
    }
    char c = 0;
    REQUIRE(::read(ready[0], &c, 1) == 1);
    ::close(ready[0]);
    ::close(ready[1]);
    REQUIRE(reader_slots_of(env, child) == 1);
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    CHECK(reader_slots_of(env, child) == 1);  // dead, but still pinning its snapshot

    CHECK(test::run_tool(m.config_file, {"set", "carl@contoso.com", "source"}).status == 0);
    CHECK(reader_slots_of(env, child) == 0);
    mdb_env_close(env);
}

TEST_CASE("[map] max_size sets the writers' map size (16G by default); 0.1.0's map_size still does") {
    const std::string head = "[map]\npath = /var/lib/coexist\n";
    const std::string rest = "[domain contoso.com]\nrouting_domain = o365.contoso.com\n";
    CHECK(parse_config(head + rest, "t.ini").map_size == std::size_t{16} << 30);
    CHECK(parse_config(head + "max_size = 64M\n" + rest, "t.ini").map_size == std::size_t{64} << 20);
    CHECK(parse_config(head + "map_size = 2G\n" + rest, "t.ini").map_size == std::size_t{2} << 30);
    CHECK_THROWS_WITH(parse_config(head + "max_size = 10K\n" + rest, "t.ini"), Catch::Contains("at least 1M"));
}
