// MapWatcher (daemon/src/map_watcher.cpp): an idle daemon lets go of a replaced data.mdb.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "coexist/map_reader.hpp"
#include "coexist/map_watcher.hpp"
#include "fixture.hpp"

using namespace coexist;

namespace {

// Whether this process still has a file open that was `path` before it was renamed over
// (the kernel shows it as "PATH (deleted)").
bool holds_replaced(const std::string& path) {
    for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
        std::error_code ec;
        const auto target = std::filesystem::read_symlink(fd.path(), ec);
        if (!ec && target.string() == path + " (deleted)") return true;
    }
    return false;
}

}  // namespace

TEST_CASE("an idle daemon's watcher lets go of a data.mdb renamed over within seconds, without a lookup") {
    test::TempDir dir;
    const std::string map_dir = dir.file("map"), data = map_dir + "/data.mdb";
    const std::string ini = dir.write("c.ini", test::standard_config_text(map_dir));
    REQUIRE(test::run_tool(ini, {"init"}).status == 0);
    REQUIRE(test::run_tool(ini, {"set", "ann@contoso.com", "migrated"}).status == 0);
    std::filesystem::copy_file(data, dir.file("copy.mdb"));

    MapReader map(map_dir);
    REQUIRE(map.user_count() == 1);  // the map open, as after a lookup
    const MapWatcher watcher(map);
    std::filesystem::rename(dir.file("copy.mdb"), data);
    REQUIRE(holds_replaced(data));
    // No lookup from here on: only the watcher looks (once a second). Bounded wait.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (holds_replaced(data) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK_FALSE(holds_replaced(data));
}
