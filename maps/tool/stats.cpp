// `coexist-map stats [--json]`: what the map holds, counted in one read transaction. The JSON
// form is for monitoring and scripts; its fields are documented in coexist-map(8) and only
// ever gain new ones.
#include <fmt/format.h>
#include <signal.h>

#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>

#include "coexist/map_store.hpp"
#include "commands.hpp"

namespace coexist::tool {

namespace {

using Json = nlohmann::ordered_json;

// The follower writes what it is doing into the map with its pid at the end ("... (pid N)"),
// and a follower killed with SIGKILL cannot take it back. Whether it still runs: nullopt when
// the text names no pid; false only when no such process exists (ESRCH; EPERM is a process of
// another user, as the follower runs as coexist-sync) or when it is a zombie. The pid is of
// this host: the map is.
std::optional<bool> follower_running(const std::string& following) {
    const auto at = following.rfind("pid ");
    if (at == std::string::npos || following.empty() || following.back() != ')') return std::nullopt;
    const std::string digits = following.substr(at + 4, following.size() - 1 - (at + 4));
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
    const auto pid = static_cast<pid_t>(std::atol(digits.c_str()));
    if (pid <= 0) return std::nullopt;
    if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
    // A follower that has exited but not yet been reaped (a zombie) answers kill(0) too: it runs
    // no more. /proc/PID/stat's state field follows the ")" that ends the command name.
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (stat && std::getline(stat, line)) {
        const auto paren = line.rfind(')');
        if (paren != std::string::npos && paren + 2 < line.size() &&
            (line[paren + 2] == 'Z' || line[paren + 2] == 'X'))
            return false;
    }
    return true;
}

constexpr State kStates[] = {State::source, State::migrated, State::dual};

// Users per state route() acts on (an override wins; so does a scheduled change whose time has come).
struct StateCounts {
    std::size_t by_state[3] = {0, 0, 0};
    std::size_t users = 0;
    std::size_t pending = 0;  // users with a scheduled change (set --at, batch set --at)
    // `now`: a change whose time has come counts as the state (route() acts on it) and no
    // longer as pending, stored or not.
    void add(const UserRecord& r, std::int64_t now) {
        ++by_state[static_cast<int>(r.state_at(now))];
        ++users;
        pending += r.pending_state.has_value() && !r.pending_due(now);
    }
    std::size_t operator[](State s) const { return by_state[static_cast<int>(s)]; }
    Json json() const {
        Json j;
        j["total"] = users;
        for (State s : kStates) j[std::string(to_string(s))] = (*this)[s];
        j["pending"] = pending;
        return j;
    }
    std::string text() const {
        return fmt::format("{} (source {}, migrated {}, dual {}{})", users, (*this)[State::source],
                           (*this)[State::migrated], (*this)[State::dual],
                           pending ? fmt::format("; {} scheduled changes", pending) : std::string());
    }
};

struct MapCounts {
    StateCounts all, unbatched;
    std::map<std::string, StateCounts> batches, domains;
    std::size_t aliases = 0, owned = 0, overrides = 0;
    std::size_t pending_due = 0;              // due, acted on by route(), not yet stored by a write
    std::optional<std::int64_t> next_change;  // the earliest scheduled change not yet due
    std::size_t map_size = 0, used_bytes = 0;
    std::string schema;
    std::optional<std::string> synced_at, uri, held, following;
};

MapCounts count(const Config& c) {
    MapStore store(c.map_path, c.map_size, MapStore::Mode::read_only);
    MapCounts n;
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    store.read([&](MapTxn& t) {
        t.for_each_user([&](std::string_view key, const UserRecord& r) {
            n.all.add(r, now);
            (r.batch.empty() ? n.unbatched : n.batches[r.batch]).add(r, now);
            const auto at = key.rfind('@');
            n.domains[std::string(at == std::string_view::npos ? std::string_view() : key.substr(at + 1))].add(r, now);
            if (r.pending_due(now)) ++n.pending_due;
            else if (r.pending_state && (!n.next_change || r.pending_at < *n.next_change)) n.next_change = r.pending_at;
            if (r.owner == Owner::directory) ++n.owned;
            if (r.override_state) ++n.overrides;
            return true;
        });
        n.aliases = t.alias_count();
        n.schema = t.schema_version();
        n.synced_at = t.meta(meta::kDirectorySyncedAt);
        n.uri = t.meta(meta::kDirectoryUri);
        n.held = t.meta(meta::kDirectoryHeldRemovals);
        n.following = t.meta(meta::kDirectoryFollowing);
    });
    n.map_size = store.map_size();
    n.used_bytes = store.used_bytes();
    return n;
}

void print_json(const Config& c, const MapCounts& n, std::ostream& out) {
    const auto now = static_cast<long long>(std::time(nullptr));
    Json j;
    j["map"] = c.map_path;
    j["schema"] = std::atoi(n.schema.c_str());
    j["users"] = n.all.json();
    Json batches = Json::object();
    for (const auto& [name, counts] : n.batches) batches[name] = counts.json();
    j["batches"] = batches;
    j["unbatched"] = n.unbatched.json();
    Json domains = Json::object();
    for (const auto& [name, counts] : n.domains) domains[name] = counts.json();
    j["domains"] = domains;
    j["aliases"] = n.aliases;
    j["overrides"] = n.overrides;
    // The total is all of them, as coexist-map(8) says: those still to come (the rows' pending)
    // and those due, which the rows already count in their new state.
    j["pending"] = {{"total", n.all.pending + n.pending_due},
                    {"due", n.pending_due},
                    {"next_at", n.next_change ? Json(format_time(*n.next_change)) : Json(nullptr)}};
    j["owners"] = {{"admin", n.all.users - n.owned}, {"directory", n.owned}};
    j["map_size_bytes"] = n.map_size;
    j["map_used_bytes"] = n.used_bytes;
    if (c.directory.configured() || n.synced_at) {
        Json d;
        d["uri"] = n.uri ? Json(*n.uri) : Json(nullptr);
        if (n.synced_at) {
            const long long t = std::atoll(n.synced_at->c_str());
            d["synced_at"] = format_time(t);
            d["synced_ago_seconds"] = now - t;
        } else {
            d["synced_at"] = nullptr;
            d["synced_ago_seconds"] = nullptr;
        }
        d["following"] = n.following ? Json(*n.following) : Json(nullptr);
        const auto running = n.following ? follower_running(*n.following) : std::nullopt;
        d["follower_running"] = running ? Json(*running) : Json(nullptr);
        d["held_removals"] = n.held ? std::strtoull(n.held->c_str(), nullptr, 10) : 0ULL;
        j["directory"] = d;
    } else {
        j["directory"] = nullptr;
    }
    // Replace, not throw: a batch name or follower text is the admin's bytes; the JSON must
    // still come out (an unpaired byte shows as U+FFFD).
    out << j.dump(2, ' ', false, Json::error_handler_t::replace) << '\n';
}

void print_text(const Config& c, const MapCounts& n, std::ostream& out) {
    out << fmt::format("map: {}\nusers: {}\naliases: {}\nbatches: {}\n", c.map_path, n.all.text(), n.aliases,
                       n.batches.size());
    for (const auto& [name, counts] : n.batches) out << fmt::format("  batch {}: {}\n", name, counts.text());
    if (!n.batches.empty() && n.unbatched.users) out << fmt::format("  no batch: {}\n", n.unbatched.text());
    if (n.all.pending + n.pending_due)
        out << fmt::format("scheduled changes: {} ({} due{})\n", n.all.pending + n.pending_due, n.pending_due,
                           n.next_change ? ", next at " + format_time(*n.next_change) : std::string());
    out << fmt::format("map size: {:.1f} MiB, used: {:.1f} MiB\n", n.map_size / 1048576.0, n.used_bytes / 1048576.0);
    if (c.directory.configured() || n.synced_at) {
        out << fmt::format("directory: {} users owned by the directory, {} by the admin, {} overrides\n", n.owned,
                           n.all.users - n.owned, n.overrides);
        if (n.synced_at) {
            const long long t = std::atoll(n.synced_at->c_str());
            out << fmt::format("last directory sync: {} ({} s ago) from {}\n", format_time(t),
                               static_cast<long long>(std::time(nullptr)) - t, n.uri.value_or("?"));
        } else {
            out << "last directory sync: never\n";
        }
        if (n.following) {
            if (follower_running(*n.following) == false)
                out << fmt::format("follower: not running (its process is gone); it last said: {}\n", *n.following);
            else
                out << fmt::format("follower: {}\n", *n.following);
        }
        if (n.held && *n.held != "0")
            out << fmt::format("removals held back by max_removals: {} (run 'coexist-map sync --force' to apply)\n",
                               *n.held);
    }
}

}  // namespace

int stats(const Config& c, bool json, std::ostream& out) {
    const MapCounts n = count(c);
    if (json) print_json(c, n, out);
    else print_text(c, n, out);
    return kOk;
}

}  // namespace coexist::tool
