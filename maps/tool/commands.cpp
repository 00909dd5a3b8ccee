#include "commands.hpp"

#include <algorithm>
#include <ctime>
#include <fmt/format.h>
#include <iostream>
#include <map>
#include <ostream>
#include <variant>

#include "coexist/csv.hpp"
#include "coexist/map_reader.hpp"
#include "coexist/map_store.hpp"
#include "coexist/route.hpp"
#include "coexist/user_key.hpp"

namespace coexist::tool {

namespace {

MapStore open_store(const Config& c, MapStore::Mode mode = MapStore::Mode::read_write) {
    return MapStore(c.map_path, c.map_size, mode);
}

ChangeContext context(std::string command) {
    return ChangeContext{current_user_name(), std::move(command), static_cast<std::int64_t>(std::time(nullptr))};
}

State state_or_throw(const std::string& s) {
    const auto st = parse_state(s);
    if (!st) throw DataError("unknown state '" + s + "' (expected source, migrated or dual)");
    return *st;
}

std::string target_or_throw(const Config& c, const std::string& t) {
    auto r = admin_target(c, t);
    if (auto* e = std::get_if<KeyError>(&r)) throw DataError(e->reason);
    return std::get<std::string>(r);
}

}  // namespace

std::string user_key_or_throw(const Config& c, const std::string& address) {
    auto r = admin_user_key(c, address);
    if (auto* e = std::get_if<KeyError>(&r)) throw DataError(e->reason);
    return std::get<std::string>(r);
}

std::string checked_batch(const std::string& batch) {
    if (batch.size() > 64) throw DataError("batch name longer than 64 bytes");
    for (unsigned char ch : batch)
        if (ch < 0x20 || ch == 0x7f) throw DataError("batch name contains a control character");
    return batch;
}

std::string format_time(long long unix_time) {
    std::time_t t = static_cast<std::time_t>(unix_time);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// The group the daemons run in (the primary group of [milter] user, else of [policyd] user):
// the map directory `init` creates belongs to it. nullopt when neither user exists here.
std::optional<gid_t> daemon_group(const Config& c) {
    for (const auto* name : {&c.milter.user, &c.policyd.user})
        if (auto u = find_user(*name)) return u->gid;
    return std::nullopt;
}

int init(const Config& c, std::ostream& out) {
    MapStore store(c.map_path, c.map_size, MapStore::Mode::create, daemon_group(c));
    std::size_t users = 0;
    store.read([&](MapTxn& t) { users = t.user_count(); });
    out << fmt::format("map {} ready ({} users)\n", c.map_path, users);
    return kOk;
}

int set(const Config& c, const std::string& address, const std::string& state,
        const std::optional<std::string>& target, const std::optional<std::string>& batch, std::ostream& out) {
    const std::string key = user_key_or_throw(c, address);
    UserRecord record;
    record.state = state_or_throw(state);
    if (target) record.target = target->empty() ? std::string() : target_or_throw(c, *target);
    if (batch) record.batch = checked_batch(*batch);
    auto store = open_store(c);
    std::string old;
    store.write(context("set"), [&](MapTxn& t) {
        if (auto p = t.alias_primary(key))
            throw DataError(key + " is an alias of " + *p + ": set the primary address, or unalias it first");
        const auto existing = t.user(key);
        old = existing ? std::string(to_string(existing->state)) : "new";
        // Options not given keep what the user had: `set ann migrated` keeps her target.
        if (existing && !target) record.target = existing->target;
        if (existing && !batch) record.batch = existing->batch;
        t.put_user(key, record);
    });
    out << fmt::format("{}: {} -> {}\n", key, old, to_string(record.state));
    return kOk;
}

int remove(const Config& c, const std::string& address, std::ostream& out) {
    const std::string key = user_key_or_throw(c, address);
    auto store = open_store(c);
    store.write(context("remove"), [&](MapTxn& t) {
        if (!t.remove_user(key)) throw DataError("no such user: " + key);
    });
    out << fmt::format("{}: removed\n", key);
    return kOk;
}

int alias(const Config& c, const std::string& alias_address, const std::string& primary_address, std::ostream& out) {
    const std::string alias = user_key_or_throw(c, alias_address);
    const std::string primary = user_key_or_throw(c, primary_address);
    if (alias == primary) throw DataError(alias + " cannot be an alias of itself");
    auto store = open_store(c);
    store.write(context("alias"), [&](MapTxn& t) {
        if (!t.user(primary)) throw DataError("no such user: " + primary);
        if (t.user(alias)) throw DataError(alias + " is a user: remove it before making it an alias");
        t.put_alias(alias, primary);
    });
    out << fmt::format("{}: alias of {}\n", alias, primary);
    return kOk;
}

int unalias(const Config& c, const std::string& alias_address, std::ostream& out) {
    const std::string alias = user_key_or_throw(c, alias_address);
    auto store = open_store(c);
    store.write(context("unalias"), [&](MapTxn& t) {
        if (!t.remove_alias(alias)) throw DataError("no such alias: " + alias);
    });
    out << fmt::format("{}: alias removed\n", alias);
    return kOk;
}

int get(const Config& c, const std::string& address, std::ostream& out) {
    const std::string key = user_key_or_throw(c, address);
    auto store = open_store(c, MapStore::Mode::read_only);
    bool found = false;
    store.read([&](MapTxn& t) {
        std::string primary = key;
        if (auto p = t.alias_primary(key)) {
            out << fmt::format("{}: alias of {}\n", key, *p);
            primary = *p;
        }
        const auto r = t.user(primary);
        if (!r) return;
        found = true;
        out << fmt::format("address: {}\nstate: {}\ntarget: {}\nbatch: {}\nchanged: {}\n", primary,
                           to_string(r->state), r->target.empty() ? "-" : r->target,
                           r->batch.empty() ? "-" : r->batch, format_time(r->changed));
        const auto aliases = t.aliases_of(primary);
        out << "aliases: " << (aliases.empty() ? "-" : fmt::format("{}", fmt::join(aliases, ";"))) << "\n";
    });
    if (!found) throw DataError("no such user or alias: " + key);
    return kOk;
}

int route(const Config& c, const std::vector<std::string>& addresses, std::ostream& out) {
    // The very function and reader the daemons use.
    MapReader reader(c.map_path);
    int status = kOk;
    for (const auto& a : addresses) {
        const RoutingDecision d = coexist::route(c, reader, a);
        out << a << ' ' << to_string(d.action);
        if (!d.address.empty()) out << ' ' << d.address;
        out << '\n';
        if (d.action == Action::tempfail) {
            status = kMapUnavailable;
            // Why, for the admin (stdout keeps its one line per address): flushed first so
            // the two read in order when both go to one terminal or pipe.
            out.flush();
            std::cerr << "coexist-map: " << a << ": " << d.detail << '\n';
        }
    }
    return status;
}

int list(const Config& c, const std::optional<std::string>& state, const std::optional<std::string>& batch,
         std::ostream& out) {
    const std::optional<State> want = state ? std::optional(state_or_throw(*state)) : std::nullopt;
    auto store = open_store(c, MapStore::Mode::read_only);
    store.read([&](MapTxn& t) {
        t.for_each_user([&](std::string_view key, const UserRecord& r) {
            if (want && r.state != *want) return true;
            if (batch && r.batch != *batch) return true;
            out << key << ' ' << to_string(r.state);
            if (!r.target.empty()) out << " target=" << r.target;
            if (!r.batch.empty()) out << " batch=" << r.batch;
            out << '\n';
            return true;
        });
    });
    return kOk;
}

int export_csv(const Config& c, std::ostream& out) {
    auto store = open_store(c, MapStore::Mode::read_only);
    store.read([&](MapTxn& t) {
        out << "address,state,target,batch,aliases\n";
        t.for_each_user([&](std::string_view key, const UserRecord& r) {
            out << csv_field(key) << ',' << to_string(r.state) << ',' << csv_field(r.target) << ','
                << csv_field(r.batch) << ',' << csv_field(fmt::format("{}", fmt::join(t.aliases_of(key), ";")))
                << '\n';
            return true;
        });
    });
    return kOk;
}

int stats(const Config& c, std::ostream& out) {
    auto store = open_store(c, MapStore::Mode::read_only);
    std::map<State, std::size_t> by_state;
    std::map<std::string, std::size_t> by_batch;
    std::size_t users = 0, aliases = 0;
    store.read([&](MapTxn& t) {
        t.for_each_user([&](std::string_view, const UserRecord& r) {
            ++by_state[r.state];
            ++by_batch[r.batch];
            return true;
        });
        users = t.user_count();
        aliases = t.alias_count();
    });
    out << fmt::format("map: {}\nusers: {} (source {}, migrated {}, dual {})\naliases: {}\nbatches: {}\n",
                       c.map_path, users, by_state[State::source], by_state[State::migrated],
                       by_state[State::dual], aliases, by_batch.size() - by_batch.count(""));
    for (const auto& [name, n] : by_batch)
        if (!name.empty()) out << fmt::format("  batch {}: {}\n", name, n);
    out << fmt::format("map size: {:.1f} MiB, used: {:.1f} MiB\n", store.map_size() / 1048576.0,
                       store.used_bytes() / 1048576.0);
    return kOk;
}

int history(const Config& c, const std::string& address, std::ostream& out) {
    const std::string key = user_key_or_throw(c, address);
    auto store = open_store(c, MapStore::Mode::read_only);
    std::vector<AuditEntry> entries;
    store.read([&](MapTxn& t) { entries = t.history(key); });
    if (entries.empty()) throw DataError("no history for " + key);
    for (const auto& e : entries)
        out << fmt::format("{} {}: {} -> {}{}, by={} ({})\n", format_time(e.time), e.address,
                           e.old_value.empty() ? "(none)" : e.old_value, e.new_value.empty() ? "(none)" : e.new_value,
                           e.batch.empty() ? "" : ", batch=" + e.batch, e.who, e.command);
    return kOk;
}

}  // namespace coexist::tool
