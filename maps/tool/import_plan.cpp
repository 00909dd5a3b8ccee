#include "import_plan.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <unordered_set>

#include "coexist/utc_time.hpp"
#include "commands.hpp"

namespace coexist::tool {

namespace {

// "migrated, target x@y, batch wave1": a record as the diff shows it.
std::string describe_record(const UserRecord& r) {
    std::string out(to_string(r.state));
    if (!r.target.empty()) out += ", target " + r.target;
    if (!r.batch.empty()) out += ", batch " + r.batch;
    return out;
}

std::string or_none(const std::string& v) { return v.empty() ? "(none)" : v; }

// "state source -> migrated, batch wave1 -> wave2": only what differs.
std::string describe_change(const UserRecord& old, const UserRecord& now) {
    std::string out;
    auto add = [&out](std::string_view field, const std::string& a, const std::string& b) {
        if (a == b) return;
        if (!out.empty()) out += ", ";
        out += fmt::format("{} {} -> {}", field, or_none(a), or_none(b));
    };
    add("state", std::string(to_string(old.state)), std::string(to_string(now.state)));
    add("target", old.target, now.target);
    add("batch", old.batch, now.batch);
    const auto pending = [](const UserRecord& r) {
        return r.pending_state ? fmt::format("{} at {}", to_string(*r.pending_state), utc_timestamp(r.pending_at))
                               : std::string();
    };
    add("pending", pending(old), pending(now));
    return out;
}

bool same_routing(const UserRecord& old, const UserRecord& now) {
    return old.state == now.state && old.target == now.target && old.batch == now.batch &&
           old.pending_state == now.pending_state && old.pending_at == now.pending_at;
}

// What the row makes of the user's record. Starts from the record, so what an import does not
// set (a field a later schema adds) is kept; state always, target and batch when the file has
// them. The file says what the state is now: a scheduled change left behind would undo it later
// (a rollback imported before a planned cut-over), so it goes, and the diff shows it; unless the
// file itself carries the schedule (pending_state/pending_at, as export writes them).
UserRecord merged_record(const ImportFile& file, const ImportRow& row, const std::optional<UserRecord>& old) {
    UserRecord record = old.value_or(UserRecord{});
    record.state = row.record.state;
    record.pending_state = row.record.pending_state;
    record.pending_at = row.record.pending_at;
    if (!old || !file.keeps_target) record.target = row.record.target;
    if (!old || !file.keeps_batch) record.batch = row.record.batch;
    return record;
}

}  // namespace

ImportPlan plan_import(MapTxn& t, const ImportFile& file, const PruneScope& prune, ImportErrors& errors,
                       bool full_diff) {
    ImportPlan plan;
    auto note = [&](std::string text, bool removal) {
        if (full_diff || removal) plan.changes.push_back({std::move(text), removal});
    };
    std::unordered_set<std::string_view> in_file;  // every key of the file, bad rows' too
    in_file.reserve(file.rows.size() + file.bad_row_keys.size());
    for (const auto& row : file.rows) in_file.insert(row.key);
    for (const auto& key : file.bad_row_keys) in_file.insert(key);
    std::unordered_set<std::string> pruned;
    if (prune.enabled) {
        // Never a directory-owned user (design 13.1): the directory decides whether it exists.
        std::size_t in_scope = 0;
        t.for_each_user([&](std::string_view key, const UserRecord& r) {
            if (r.owner != Owner::admin || (prune.batch && r.batch != *prune.batch)) return true;
            ++in_scope;
            if (!in_file.count(key)) plan.prune.emplace_back(key);
            return true;
        });
        if (!prune.force && plan.prune.size() > kPruneSafeCount && plan.prune.size() * 2 > in_scope) {
            const std::string why = fmt::format(
                "--prune would remove {} of the {} users set by hand{}: more than half. Check the file (and "
                "--batch); --dry-run lists them; --force removes them", plan.prune.size(), in_scope,
                prune.batch ? " in batch " + *prune.batch : std::string());
            if (!full_diff) throw DataError(file.name + ": " + why);
            plan.changes.push_back({"refused without --force: " + why, false});
        }
        pruned.insert(plan.prune.begin(), plan.prune.end());
    }
    // A user whose aliases this import takes away anyway: restated by the file's aliases
    // column, or pruned. Its aliases may go to another user of the file.
    auto releases_aliases = [&](const std::string& primary) {
        return (file.has_aliases && in_file.count(primary)) || pruned.count(primary);
    };

    for (const auto& row : file.rows) {
        std::optional<std::string> bad;
        const auto old = t.user(row.key);
        const UserRecord record = merged_record(file, row, old);
        if (auto p = t.alias_primary(row.key); p && !releases_aliases(*p))
            bad = fmt::format("{} is an alias of {} in the map", row.key, *p);
        else if (old && old->owner == Owner::directory)
            bad = fmt::format("{} is owned by the directory ({}): change it there, or override its state with "
                              "'coexist-map set'", row.key, old->dn);
        for (const auto& a : row.aliases) {
            if (bad) break;
            if (t.user(a) && !in_file.count(a) && !pruned.count(a))
                bad = fmt::format("alias {} is a user in the map", a);
            else if (auto p = t.alias_primary(a); p && *p != row.key && !releases_aliases(*p))
                bad = fmt::format("alias {} belongs to {} in the map", a, *p);
        }
        if (bad) {
            errors.add(row.line, std::move(*bad));
            continue;
        }

        const bool same_record = old && same_routing(*old, record);
        if (full_diff && !old) note(fmt::format("add {}: {}", row.key, describe_record(record)), false);
        if (full_diff && old && !same_record)
            note(fmt::format("change {}: {}", row.key, describe_change(*old, record)), false);
        // With an aliases column the row's list replaces the user's: a removed alias sends its
        // mail elsewhere, so it is a change to count and to show, never "unchanged".
        bool same_aliases = true;
        if (file.has_aliases) {
            std::vector<std::string> before = old ? t.aliases_of(row.key) : std::vector<std::string>{};
            std::vector<std::string> after = row.aliases;
            std::sort(before.begin(), before.end());
            std::sort(after.begin(), after.end());
            for (const auto& a : before)
                if (!std::binary_search(after.begin(), after.end(), a)) {
                    note(fmt::format("unalias {} (of {})", a, row.key), true);
                    ++plan.counts.aliases_removed;
                }
            for (const auto& a : after)
                if (!std::binary_search(before.begin(), before.end(), a)) {
                    if (full_diff) note(fmt::format("alias {} -> {}", a, row.key), false);
                    ++plan.counts.aliases_added;
                }
            same_aliases = before == after;
        }
        if (!old) ++plan.counts.added;
        else if (same_record && same_aliases) ++plan.counts.unchanged;
        else ++plan.counts.changed;
    }

    for (const auto& key : plan.prune) {
        const auto r = t.user(key);
        note(fmt::format("remove {}: {} (not in the file)", key, describe_record(*r)), true);
        ++plan.counts.removed;
        for (const auto& a : t.aliases_of(key)) {
            note(fmt::format("unalias {} (of {})", a, key), true);
            ++plan.counts.aliases_removed;
        }
    }
    return plan;
}

void apply_import(MapTxn& t, const ImportFile& file, const ImportPlan& plan) {
    // Aliases first leave their old owners (the file's users, then the pruned users), so an
    // alias can move between two users of the file, and from a pruned user to a kept one.
    if (file.has_aliases)
        for (const auto& row : file.rows)
            for (const auto& a : t.aliases_of(row.key))
                if (std::find(row.aliases.begin(), row.aliases.end(), a) == row.aliases.end()) t.remove_alias(a);
    for (const auto& key : plan.prune) t.remove_user(key);  // with its aliases
    for (const auto& row : file.rows) {
        const auto old = t.user(row.key);
        t.put_user(row.key, merged_record(file, row, old), old);
    }
    if (file.has_aliases)
        for (const auto& row : file.rows)
            for (const auto& a : row.aliases) t.put_alias(a, row.key);
}

}  // namespace coexist::tool
