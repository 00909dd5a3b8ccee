// Never reject on doubt (design 13.6): a `reject` domain answers tempfail instead of 550 while
// the map holds no user of that domain, so an empty or wrongly imported map defers mail for a
// domain instead of bouncing all of it.
#include <catch2/catch.hpp>


#include <sstream>

#include "coexist/map_reader.hpp"
#include "coexist/route.hpp"
#include "commands.hpp"
#include "lmdb.hpp"
#include "fixture.hpp"

using namespace coexist;

namespace {

struct DoubtMap {
    test::TempDir dir;
    Config config;  // contoso.com relays unknown users, fabrikam.com rejects them
    MapReader reader;
    std::ostringstream out;
    DoubtMap() : config(test::standard_config(dir.file("map"))), reader(config.map_path) { tool::init(config, out); }
    Action action(const char* recipient) { return route(config, reader, recipient).action; }
};

}  // namespace

TEST_CASE("unknown user of a reject domain: tempfail while the map has no user of that domain, reject after") {
    DoubtMap m;
    tool::set(m.config, "ann@contoso.com", "migrated", std::nullopt, std::nullopt, m.out);

    const RoutingDecision d = route(m.config, m.reader, "nobody@fabrikam.com");
    CHECK(d.action == Action::tempfail);
    CHECK_THAT(d.detail, Catch::Contains("fabrikam.com"));
    CHECK(m.action("nobody@contoso.com") == Action::relay);  // relay domains are not in doubt

    tool::set(m.config, "erin@fabrikam.com", "source", std::nullopt, std::nullopt, m.out);
    CHECK(m.action("nobody@fabrikam.com") == Action::reject);
    CHECK(m.action("erin@fabrikam.com") == Action::relay);

    tool::remove(m.config, "erin@fabrikam.com", m.out);
    CHECK(m.action("nobody@fabrikam.com") == Action::tempfail);
}

TEST_CASE("per-domain counts follow imports, removals, aliases and repeated sets") {
    DoubtMap m;
    tool::import_csv(m.config,
                     m.dir.write("u.csv", "address,state,aliases\nerin@fabrikam.com,source,e@fabrikam.com\n"
                                          "frank@fabrikam.com,migrated,\n"),
                     std::nullopt, false, m.out);
    tool::set(m.config, "erin@fabrikam.com", "dual", std::nullopt, std::nullopt, m.out);  // not a new user
    tool::remove(m.config, "erin@fabrikam.com", m.out);
    CHECK(m.action("nobody@fabrikam.com") == Action::reject);  // frank is left
    tool::remove(m.config, "frank@fabrikam.com", m.out);
    CHECK(m.action("nobody@fabrikam.com") == Action::tempfail);
    CHECK(m.action("e@fabrikam.com") == Action::tempfail);  // the alias went with erin
}

TEST_CASE("a map written before per-domain counts: tempfail for reject domains until any write adds them") {
    DoubtMap m;
    tool::set(m.config, "erin@fabrikam.com", "source", std::nullopt, std::nullopt, m.out);
    {
        // What a 0.1.0 coexist-map left: no counts in meta.
        Environment env(m.config.map_path, 0, 0);
        Transaction txn(env, Transaction::Mode::write);
        {
            Cursor c(txn, txn.open_db("meta"));  // closed before the commit
            std::string_view k, v;
            for (bool ok = c.seek("", k, v); ok; ok = c.next(k, v))
                if (k != "schema_version" && k != "audit_sequence") c.del_current();
        }
        txn.commit();
    }
    CHECK(m.action("nobody@fabrikam.com") == Action::tempfail);
    CHECK(m.action("erin@fabrikam.com") == Action::relay);
    tool::init(m.config, m.out);  // any coexist-map write (init included) counts the users again
    CHECK(m.action("nobody@fabrikam.com") == Action::reject);
}
