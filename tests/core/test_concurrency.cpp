// Readers and the writer in different processes: a committed change is seen by the next lookup,
// and a reader looping through a 100k-user import never sees an error or half of it.
#include <catch2/catch.hpp>

#include <atomic>
#include <fstream>
#include <future>
#include <sstream>

#include "coexist/map_reader.hpp"
#include "coexist/route.hpp"
#include "commands.hpp"
#include "fixture.hpp"

using namespace coexist;

TEST_CASE("a change committed by another process is seen by the next lookup, no reopen") {
    test::TempDir dir;
    const std::string config_file = dir.write("c.ini", test::standard_config_text(dir.file("map")));
    const Config config = load_config(config_file);
    REQUIRE(test::run_tool(config_file, {"init"}).status == 0);
    REQUIRE(test::run_tool(config_file, {"set", "ann@contoso.com", "source"}).status == 0);

    MapReader reader(config.map_path);  // one reader, kept open across the changes
    CHECK(route(config, reader, "ann@contoso.com").action == Action::relay);
    REQUIRE(test::run_tool(config_file, {"set", "ann@contoso.com", "migrated"}).status == 0);
    CHECK(route(config, reader, "ann@contoso.com").action == Action::rewrite);
    REQUIRE(test::run_tool(config_file, {"set", "ann@contoso.com", "source"}).status == 0);
    CHECK(route(config, reader, "ann@contoso.com").action == Action::relay);
    REQUIRE(test::run_tool(config_file, {"alias", "a@contoso.com", "ann@contoso.com"}).status == 0);
    CHECK(route(config, reader, "a@contoso.com").detail == "alias of ann@contoso.com");
}

TEST_CASE("a reader looping during a 100k-user import (with map growth) sees no error and no half import") {
    test::TempDir dir;
    // Start with the smallest map allowed so the import must grow it several times while the
    // reader holds its mapping (MDB_MAP_RESIZED on the reader's side).
    const std::string config_file =
        dir.write("c.ini", "[map]\npath = " + dir.file("map") + "\nmap_size = 1M\n" +
                               test::standard_config_text(dir.file("map")).substr(
                                   test::standard_config_text(dir.file("map")).find("[routing]")));
    const Config config = load_config(config_file);
    REQUIRE(test::run_tool(config_file, {"init"}).status == 0);
    REQUIRE(test::run_tool(config_file, {"set", "sentinel@contoso.com", "migrated"}).status == 0);

    constexpr int kUsers = 100000;
    {
        std::ofstream csv(dir.file("big.csv"));
        csv << "address,state,batch,aliases\n";
        for (int i = 0; i < kUsers; ++i)
            csv << "user" << i << "@contoso.com,migrated,big,alias" << i << "@contoso.com\n";
    }
    const std::string first = "user0@contoso.com", last = "user" + std::to_string(kUsers - 1) + "@contoso.com";

    std::atomic<bool> done{false};
    auto writer = std::async(std::launch::async, [&] {
        auto r = test::run_tool(config_file, {"import", dir.file("big.csv")});
        done = true;
        return r;
    });

    MapReader reader(config.map_path);
    long lookups = 0, errors = 0, torn = 0, seen_after = 0;
    // Bounded: the import takes seconds; stop after it ends or at 2 million lookups.
    while (!done && lookups < 2000000) {
        const RoutingDecision s = route(config, reader, "sentinel@contoso.com");
        const RoutingDecision f = route(config, reader, first);
        const RoutingDecision l = route(config, reader, "Alias" + std::to_string(kUsers - 1) + "@contoso.com");
        lookups += 3;
        if (s.action != Action::rewrite || s.address != "sentinel@o365.contoso.com") ++errors;
        for (const auto* d : {&f, &l})
            if (d->action != Action::rewrite && d->action != Action::relay) ++errors;
        // first looked up before last: if the first user is there, the whole import is.
        if (f.action == Action::rewrite && l.action != Action::rewrite) ++torn;
        if (f.action == Action::rewrite) ++seen_after;
    }
    const auto result = writer.get();
    INFO(result.out);
    REQUIRE(result.status == 0);
    CHECK(errors == 0);
    CHECK(torn == 0);
    CHECK(lookups > 0);
    WARN("lookups during import: " << lookups << ", of which after commit: " << seen_after);
    CHECK(route(config, reader, last).address == "user" + std::to_string(kUsers - 1) + "@o365.contoso.com");
    CHECK(route(config, reader, "alias5@contoso.com").address == "user5@o365.contoso.com");
    CHECK(reader.user_count() == kUsers + 1);
}
