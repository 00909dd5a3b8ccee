// `coexist-map batch list|set|cancel` and the schedules behind `--at` (design 10, 13.1, 13.6): a
// batch is the set of users whose record names it; a scheduled change is stored in each user's
// record and acted on by route() at its second on every relay, with no cron and no writer running.
#include <ctime>
#include <fmt/format.h>
#include <map>
#include <ostream>
#include <vector>

#include "coexist/log_text.hpp"
#include "coexist/map_store.hpp"
#include "coexist/utc_time.hpp"
#include "commands.hpp"

namespace coexist::tool {

std::int64_t scheduled_time_or_throw(const std::string& at, std::int64_t now) {
    const auto when = parse_iso8601(at);
    if (!when)
        throw DataError(fmt::format("--at '{}' is not a valid ISO 8601 date and time with an offset (e.g. 2026-12-05T22:00:00Z "
                                    "or 2026-12-05T23:00:00+01:00; without an offset each relay would read it "
                                    "in its own time zone)", loggable(at)));
    if (*when <= now)
        throw DataError(fmt::format("--at {} is not in the future (it is {} now); leave out --at to change it now",
                                    utc_timestamp(*when), utc_timestamp(now)));
    return *when;
}

std::string relative_time(std::int64_t when, std::int64_t now) {
    const std::int64_t d = when >= now ? when - now : now - when;
    std::string span;
    if (d < 120) span = fmt::format("{} s", d);
    else if (d < 2 * 3600) span = fmt::format("{} min", d / 60);
    else if (d < 2 * 86400) span = fmt::format("{} h {} min", d / 3600, d % 3600 / 60);
    else span = fmt::format("{} days {} h", d / 86400, d % 86400 / 3600);
    return when >= now ? "in " + span : span + " ago";
}

namespace {

struct BatchSummary {
    std::map<State, std::size_t> by_state;             // the state route() acts on now
    std::map<std::pair<std::int64_t, State>, std::size_t> pending;  // not yet due: (time, state) -> users
    std::size_t users = 0, overrides = 0, directory = 0;
};

std::int64_t now_seconds() { return static_cast<std::int64_t>(std::time(nullptr)); }

ChangeContext batch_context(std::string command) {
    return ChangeContext{current_user_name(), std::move(command), now_seconds()};
}

// The keys of the batch's users, in key order; DataError for an unknown or empty batch so that
// a typo in a batch name is never a command that silently does nothing.
std::vector<std::pair<std::string, UserRecord>> batch_users(MapTxn& t, const std::string& name) {
    require_batch_name(name);
    std::vector<std::pair<std::string, UserRecord>> users;
    t.for_each_user([&](std::string_view key, const UserRecord& r) {
        if (r.batch == name) users.emplace_back(std::string(key), r);
        return true;
    });
    if (users.empty())
        throw DataError(fmt::format("no user in batch '{}' ('coexist-map batch list' shows the batches)", loggable(name)));
    return users;
}

}  // namespace

int batch_list(const Config& c, std::ostream& out) {
    MapStore store(c.map_path, c.map_size, MapStore::Mode::read_only);
    std::map<std::string, BatchSummary> batches;
    const auto now = now_seconds();
    store.read([&](MapTxn& t) {
        t.for_each_user([&](std::string_view, const UserRecord& r) {
            if (r.batch.empty()) return true;
            BatchSummary& b = batches[r.batch];
            ++b.users;
            ++b.by_state[r.state_at(now)];
            if (r.override_state) ++b.overrides;
            if (r.owner == Owner::directory) ++b.directory;
            if (r.pending_state && !r.pending_due(now)) ++b.pending[{r.pending_at, *r.pending_state}];
            return true;
        });
    });
    if (batches.empty()) {
        out << "no batches (import with --batch NAME, or set ADDRESS STATE --batch NAME)\n";
        return kOk;
    }
    for (auto& [name, b] : batches) {
        out << fmt::format("{}: {} {} (source {}, migrated {}, dual {})", name, b.users, b.users == 1 ? "user" : "users",
                           b.by_state[State::source],
                           b.by_state[State::migrated], b.by_state[State::dual]);
        if (b.directory) out << fmt::format(", {} owned by the directory, {} overrides", b.directory, b.overrides);
        out << '\n';
        for (const auto& [when, n] : b.pending)
            out << fmt::format("  pending: {} {} -> {} at {} ({})\n", n, n == 1 ? "user" : "users", to_string(when.second),
                               utc_timestamp(when.first), relative_time(when.first, now));
    }
    return kOk;
}

int batch_set(const Config& c, const std::string& name, const std::string& state, const std::optional<std::string>& at,
              bool dry_run, std::ostream& out) {
    const auto new_state = parse_state(state);
    if (!new_state) throw DataError(fmt::format("unknown state '{}' (expected source, migrated or dual)", printable(state)));
    const auto started = now_seconds();
    const std::optional<std::int64_t> when = at ? std::optional(scheduled_time_or_throw(*at, started)) : std::nullopt;
    MapStore store(c.map_path, c.map_size, dry_run ? MapStore::Mode::read_only : MapStore::Mode::read_write);
    std::size_t changed = 0, unchanged = 0, overrides = 0;
    std::map<std::pair<std::int64_t, State>, std::size_t> replaced;  // pending changes this one replaces
    const auto plan = [&](MapTxn& t, bool write) {
        // MapStore::write runs this again after growing a full map: count only the last run.
        changed = unchanged = overrides = 0;
        replaced.clear();
        for (auto& [key, old] : batch_users(t, name)) {
            UserRecord r = old;
            if (old.pending_state && !old.pending_due(started) &&
                !(when && *old.pending_state == *new_state && old.pending_at == *when))
                ++replaced[{old.pending_at, *old.pending_state}];
            if (when) {
                r.pending_state = *new_state;
                r.pending_at = *when;
            } else {
                // Now: replaces any schedule (a rollback must not be undone by an older --at).
                r.apply_due(started);
                r.pending_state.reset();
                r.pending_at = 0;
                if (r.owner == Owner::directory)  // design 13.1: the admin's word is an override
                    r.override_state = *new_state == r.state ? std::nullopt : std::optional<State>(*new_state);
                else
                    r.state = *new_state;
            }
            UserRecord same = r;
            same.changed = old.changed;
            if (same == old) {
                ++unchanged;
                continue;
            }
            ++changed;
            if (r.override_state) ++overrides;
            if (dry_run || !write) {
                out << fmt::format("{}: {}{} -> {}\n", key, to_string(old.state_at(started)),
                                   old.pending_state ? fmt::format(" (pending {} at {})", to_string(*old.pending_state),
                                                                   utc_timestamp(old.pending_at))
                                                     : std::string(),
                                   when ? fmt::format("{} at {}", to_string(*new_state), utc_timestamp(*when))
                                        : std::string(to_string(*new_state)));
            }
            if (write) t.put_user(key, std::move(r), old);
        }
    };
    const std::string command = when ? fmt::format("batch set {} {} --at {}", name, state, utc_timestamp(*when))
                                     : fmt::format("batch set {} {}", name, state);
    if (dry_run) store.read([&](MapTxn& t) { plan(t, false); });
    else store.write(batch_context(command), [&](MapTxn& t) { plan(t, true); });

    const std::string what = when ? fmt::format("{} at {} ({})", to_string(*new_state), utc_timestamp(*when),
                                                relative_time(*when, started))
                                  : std::string(to_string(*new_state));
    out << fmt::format("batch {}: {} {} {} {}{}{}\n", name, changed, changed == 1 ? "user" : "users",
                       dry_run ? "would be set to" : "set to", what,
                       unchanged ? fmt::format(", {} already so", unchanged) : std::string(),
                       overrides ? fmt::format(" ({} as overrides of the directory)", overrides) : std::string());
    // Say what a new word replaced: a Friday dual step dropped by a Sunday schedule, or a
    // migration cancelled by a rollback, is never silent.
    for (const auto& [pending, n] : replaced)
        out << fmt::format("  {} {} pending change to {} at {} {}\n", dry_run ? "would replace" : "replaced", n,
                           to_string(pending.second), utc_timestamp(pending.first),
                           n == 1 ? "(that user's)" : "(those users')");
    return kOk;
}

int batch_cancel(const Config& c, const std::string& name, std::ostream& out) {
    MapStore store(c.map_path, c.map_size, MapStore::Mode::read_write);
    std::size_t cancelled = 0;
    const auto now = now_seconds();
    store.write(batch_context("batch cancel " + name), [&](MapTxn& t) {
        cancelled = 0;  // run again after a full map grew: count only the last run
        for (auto& [key, old] : batch_users(t, name)) {
            // A change already due has been acted on by route(): it is stored, not cancelled
            // (the write that began this transaction has just done so).
            if (!old.pending_state || old.pending_due(now)) continue;
            UserRecord r = old;
            r.pending_state.reset();
            r.pending_at = 0;
            t.put_user(key, std::move(r), old);
            ++cancelled;
        }
        if (cancelled == 0)
            throw DataError(fmt::format("batch '{}' has no pending change to cancel (a change whose time has come is in "
                                        "effect: roll it back with 'coexist-map batch set {} STATE')", loggable(name), loggable(name)));
    });
    out << fmt::format("batch {}: {} pending changes cancelled\n", name, cancelled);
    return kOk;
}

}  // namespace coexist::tool
