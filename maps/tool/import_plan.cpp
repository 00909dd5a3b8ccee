#include "import_plan.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <stdexcept>

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
UserRecord merged_record(const ImportShape& shape, const ImportRow& row, const std::optional<UserRecord>& old) {
    UserRecord record = old.value_or(UserRecord{});
    record.state = row.record.state;
    record.pending_state = row.record.pending_state;
    record.pending_at = row.record.pending_at;
    if (!old || !shape.keeps_target) record.target = row.record.target;
    if (!old || !shape.keeps_batch) record.batch = row.record.batch;
    return record;
}

// A user --prune removes: set by hand (never the directory's, design 13.1: the directory
// decides whether it exists), in the batch pruned, and in no row of the file.
bool pruned(const PruneScope& prune, StagedRows& staged, std::string_view key, const UserRecord& r) {
    return prune.enabled && r.owner == Owner::admin && (!prune.batch || r.batch == *prune.batch) &&
           !staged.in_file(key);
}

}  // namespace

ImportDiff::ImportDiff(bool full) : full_(full), spool_(nullptr, &std::fclose) {}

void ImportDiff::note(std::string_view text, bool removal) {
    if (!full_ && !removal) return;
    if (!spool_) {
        spool_.reset(std::tmpfile());
        if (!spool_) throw std::runtime_error(fmt::format("a temporary file for the diff: {}", std::strerror(errno)));
    }
    if (std::fwrite(text.data(), 1, text.size(), spool_.get()) != text.size() || std::fputc('\n', spool_.get()) == EOF)
        throw std::runtime_error(fmt::format("writing the diff to a temporary file: {}", std::strerror(errno)));
}

void ImportDiff::clear() { spool_.reset(); }

void ImportDiff::print(std::ostream& out) {
    if (!spool_) return;
    if (std::fflush(spool_.get()) != 0 || std::fseek(spool_.get(), 0, SEEK_SET) != 0)
        throw std::runtime_error(fmt::format("reading the diff back: {}", std::strerror(errno)));
    char buf[1 << 16];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, spool_.get())) > 0) out.write(buf, static_cast<std::streamsize>(n));
    if (std::ferror(spool_.get())) throw std::runtime_error("reading the diff back: read error");
}

std::optional<std::string> prune_refusal(MapTxn& t, StagedRows& staged, const PruneScope& prune) {
    if (!prune.enabled || prune.force) return std::nullopt;
    std::size_t in_scope = 0, removals = 0;
    t.for_each_user([&](std::string_view key, const UserRecord& r) {
        if (r.owner != Owner::admin || (prune.batch && r.batch != *prune.batch)) return true;
        ++in_scope;
        if (!staged.in_file(key)) ++removals;
        return true;
    });
    if (removals <= kPruneSafeCount || removals * 2 <= in_scope) return std::nullopt;
    return fmt::format("--prune would remove {} of the {} users set by hand{}: more than half. Check the file (and "
                       "--batch); --dry-run lists them; --force removes them", removals, in_scope,
                       prune.batch ? " in batch " + *prune.batch : std::string());
}

void import_rows(MapTxn& t, const ImportShape& shape, StagedRows& staged, const PruneScope& prune,
                 ImportErrors& errors, ImportDiff& diff, ImportCounts& counts, bool write) {
    // A user whose aliases this import takes away anyway: restated by the file's aliases
    // column, or pruned. Its aliases may go to another user of the file.
    auto releases_aliases = [&](const std::string& primary) {
        if (shape.has_aliases && staged.in_file(primary)) return true;
        const auto r = prune.enabled ? t.user(primary) : std::nullopt;
        return r && pruned(prune, staged, primary, *r);
    };
    auto pruned_user = [&](const std::string& key) {
        const auto r = prune.enabled ? t.user(key) : std::nullopt;
        return r && pruned(prune, staged, key, *r);
    };

    staged.for_each_row([&](const ImportRow& row) {
        std::optional<std::string> bad;
        for (const auto& a : row.aliases)
            if (const auto line = staged.user_line(a)) {
                bad = fmt::format("alias {} is also a user (line {})", a, *line);
                break;
            }
        // Earlier rows of this pass changed only their own users and aliases, so what these
        // checks read is still the map as it was before the import.
        const auto old = t.user(row.key);
        const UserRecord record = merged_record(shape, row, old);
        if (bad) {
        } else if (auto p = t.alias_primary(row.key); p && !releases_aliases(*p)) {
            bad = fmt::format("{} is an alias of {} in the map", row.key, *p);
        } else if (old && old->owner == Owner::directory) {
            bad = fmt::format("{} is owned by the directory ({}): change it there, or override its state with "
                              "'coexist-map set'", row.key, old->dn);
        }
        for (const auto& a : row.aliases) {
            if (bad) break;
            if (t.user(a) && !staged.in_file(a) && !pruned_user(a))
                bad = fmt::format("alias {} is a user in the map", a);
            else if (const auto heir = pruned_user(a) ? t.hidden_alias_owner(a) : std::nullopt)
                // Pruned, the address goes to the directory user listing it (MapTxn::remove_user).
                bad = fmt::format("alias {} is listed by {} in the directory, whose alias it becomes when --prune "
                                  "removes the user {}", a, *heir, a);
            else if (auto p = t.alias_primary(a); p && *p != row.key && !releases_aliases(*p))
                bad = fmt::format("alias {} belongs to {} in the map", a, *p);
        }
        if (bad) {
            errors.add(row.line, std::move(*bad));
            return;
        }
        const bool writing = write && errors.empty();

        const bool same_record = old && same_routing(*old, record);
        if (diff.full() && !old) diff.note(fmt::format("add {}: {}", row.key, describe_record(record)), false);
        if (diff.full() && old && !same_record)
            diff.note(fmt::format("change {}: {}", row.key, describe_change(*old, record)), false);
        // With an aliases column the row's list replaces the user's: a removed alias sends its
        // mail elsewhere, so it is a change to count and to show, never "unchanged".
        bool same_aliases = true;
        if (shape.has_aliases) {
            std::vector<std::string> before = old ? t.aliases_of(row.key) : std::vector<std::string>{};
            std::vector<std::string> after = row.aliases;
            std::sort(before.begin(), before.end());
            std::sort(after.begin(), after.end());
            for (const auto& a : before)
                if (!std::binary_search(after.begin(), after.end(), a)) {
                    diff.note(fmt::format("unalias {} (of {})", a, row.key), true);
                    ++counts.aliases_removed;
                    if (writing) t.remove_alias(a);
                }
            for (const auto& a : after)
                if (!std::binary_search(before.begin(), before.end(), a)) {
                    if (diff.full()) diff.note(fmt::format("alias {} -> {}", a, row.key), false);
                    ++counts.aliases_added;
                }
            same_aliases = before == after;
        }
        if (!old) ++counts.added;
        else if (same_record && same_aliases) ++counts.unchanged;
        else ++counts.changed;
        if (writing) t.put_user(row.key, record, old);
    });
}

void finish_import(MapTxn& t, const ImportShape& shape, StagedRows& staged, const PruneScope& prune,
                   ImportDiff& diff, ImportCounts& counts, bool write) {
    // The pruned users, in key order, each looked up from where the last one was: the cursor
    // of a visit does not outlive a removal.
    std::string from;
    while (prune.enabled) {
        std::optional<std::pair<std::string, UserRecord>> next;
        t.for_each_user(from, [&](std::string_view key, const UserRecord& r) {
            if (!pruned(prune, staged, key, r)) return true;
            next.emplace(std::string(key), r);
            return false;
        });
        if (!next) break;
        const auto& [key, r] = *next;
        diff.note(fmt::format("remove {}: {} (not in the file)", key, describe_record(r)), true);
        ++counts.removed;
        for (const auto& a : t.aliases_of(key)) {
            diff.note(fmt::format("unalias {} (of {})", a, key), true);
            ++counts.aliases_removed;
        }
        // Printed by the real run too, beside the removal that causes it.
        if (const auto heir = t.hidden_alias_owner(key)) {
            diff.note(fmt::format("alias {} -> {} (the directory lists it)", key, *heir), true);
            ++counts.aliases_added;
        }
        if (write) t.remove_user(key);  // with its aliases; its address to the directory user listing it
        from = key;
        from.push_back('\0');  // the first key after it
    }
    // Last, so that an alias can move between two users of the file, and from a pruned user
    // to a kept one: its old user has let it go by now.
    if (write && shape.has_aliases)
        staged.for_each_alias([&](std::string_view alias, std::string_view primary) { t.put_alias(alias, primary); });
}

}  // namespace coexist::tool
