#include "view_writer.hpp"

#include <algorithm>
#include <fmt/format.h>

namespace coexist::directory {

RemovalLimitExceeded::RemovalLimitExceeded(std::size_t would_remove, std::size_t would_demote, std::size_t limit,
                                           std::size_t owned, std::size_t earlier)
    : std::runtime_error(fmt::format(
          "of the {} users the directory owns in the map, it no longer lists {} and moves {} back to the "
          "source (migrated or dual before){}: {}, more than max_removals allows ({}{}): nothing changed. A wrong "
          "base or filter, or an emptied or wrong group, does this; see what would change with "
          "'coexist-map sync --dry-run --force', and if it is meant, run 'coexist-map sync --force'",
          owned, would_remove, would_demote,
          earlier ? fmt::format(", after {} removed or moved back by the polls of the last 60 s", earlier) : "",
          would_remove + would_demote + earlier, limit, earlier ? " within 60 s" : "")),
      would_remove(would_remove), would_demote(would_demote), limit(limit), owned(owned) {}

ViewWriter::ViewWriter(MapTxn& txn, SyncCounts& counts, std::function<void(const std::string&)> change)
    : txn_(txn), counts_(counts), change_(std::move(change)) {}

namespace {

// A user as a sync line shows it: what routes (state, target) and the batch, which
// batch_attribute brings and `batch set` acts on, so that a dry run shows who joins a batch.
std::string routing_text(const UserRecord& r) {
    std::string s(to_string(r.effective_state()));
    if (!r.target.empty()) s += fmt::format(" target={}", r.target);
    if (!r.batch.empty()) s += fmt::format(" batch={}", r.batch);
    return s;
}

}  // namespace

void ViewWriter::upsert(const DirectoryUser& u) {
    ++counts_.users;
    if (!counted_users_) {
        may_rename_ = txn_.user_count() > 0;
        counted_users_ = true;
    }
    const auto existing = txn_.user(u.key);
    const bool seen_before = !seen_users_.insert(hash128(u.key));
    if (existing && existing->owner == Owner::directory && existing->dn != u.dn &&
        (present_ ? present_(existing->dn, u.key) : seen_before)) {
        // Two entries give the same address. The smaller DN wins, whatever order the server
        // sends them in, so every relay keeps the same one.
        address_conflict(u.key, existing->dn, u.dn);
        if (u.dn > existing->dn) return;
    }
    // Users and aliases never share a key, so only a key new as a user can be an alias.
    if (auto primary = existing ? std::nullopt : txn_.alias_primary(u.key)) {
        ++counts_.conflicts;
        counts_.warn(fmt::format("{} was an alias of {}; it is a user in the directory", u.key, *primary));
        txn_.remove_alias(u.key);
        ++counts_.aliases_removed;
        // A directory user's aliases are the ones it lists: this one is hidden now.
        if (const auto holder = txn_.user(*primary); holder && holder->owner == Owner::directory)
            txn_.put_hidden_alias(u.key, *primary);
    }

    UserRecord record;
    record.owner = Owner::directory;
    record.dn = u.dn;
    record.entry_uuid = !u.entry_uuid.empty() ? u.entry_uuid : existing ? existing->entry_uuid : std::string();
    record.state = u.state;
    record.target = u.target.value_or(existing ? existing->target : std::string());
    record.batch = u.batch.value_or(existing ? existing->batch : std::string());
    if (u.keep_routing && existing) {
        record.state = existing->state;
        record.target = existing->target;
    } else if (u.keep_routing) {
        // Nothing to keep: a user new to the map whose state or target could not be read (a
        // typo, values that disagree) stays where its mail went before it was listed, the
        // source, rather than take whichever value the server sent first.
        record.state = State::source;
        record.target.clear();
    }
    if (existing && existing->owner == Owner::directory) {
        record.override_state = existing->override_state;
    } else if (existing && existing->state != record.state) {
        // A user the admin set by hand before the directory took it over: the admin's state is
        // kept as an override, never silently undone (design 13.1).
        record.override_state = existing->state;
        counts_.warn(fmt::format("{}: set by hand to {}, the directory says {}: kept as an override "
                                 "(coexist-map set {} --clear-override to follow the directory)",
                                 u.key, to_string(existing->state), to_string(record.state), u.key));
    }
    // A scheduled change (`batch set --at`) is the admin's and outlives the directory's view.
    if (existing) {
        record.pending_state = existing->pending_state;
        record.pending_at = existing->pending_at;
    }
    if (record.override_state && *record.override_state == record.state) {
        txn_.audit_note(u.key, fmt::format("override={}", to_string(*record.override_state)),
                        "override dropped: the directory caught up");
        record.override_state.reset();
        ++counts_.overrides_dropped;
    }
    if (record.override_state) ++counts_.overrides;
    // The entry that held the key before: this one (its state changed), or another (two
    // entries exchanged or passed on their addresses, which moves no user back to the source).
    const bool same_entry = existing && existing->owner == Owner::directory &&
                            (!existing->entry_uuid.empty() && !u.entry_uuid.empty() ? existing->entry_uuid == u.entry_uuid
                                                                                    : existing->dn == u.dn);
    if (same_entry && existing->state != State::source && record.state == State::source) ++counts_.demoted;
    if (!existing || existing->owner != Owner::directory) ++newly_owned_;

    // The entry is new at this key (added, or taking over an address another entry gave): the
    // key it gave before, if unseen in this pass, is a rename (remove_unseen()).
    if (!same_entry && may_rename_) {
        const std::string routed = record.state != State::source ? " routed" : "";
        for (const std::string& id : {"uuid " + u.entry_uuid, "dn " + u.dn}) {
            if (id == "uuid ") continue;
            renamed_to_.insert(hash128(id));
            if (!routed.empty()) renamed_to_.insert(hash128(id + routed));
        }
    }
    if (!existing) {
        ++counts_.added;
        if (change_) change_(fmt::format("add {} {}", u.key, routing_text(record)));
    } else if (existing->owner != record.owner) {
        ++counts_.changed;
        if (change_)
            change_(fmt::format("take over {} (set by hand): {}{}", u.key, routing_text(record),
                                record.override_state ? fmt::format(", the directory says {}: the hand-set state "
                                                                    "kept as an override", to_string(record.state))
                                                      : std::string()));
    } else if (routing_text(*existing) != routing_text(record)) {
        ++counts_.changed;
        if (change_) change_(fmt::format("change {}: {} -> {}", u.key, routing_text(*existing), routing_text(record)));
    }
    txn_.put_user(u.key, record, existing);
    // A user new to the map has no aliases in it yet: nothing to compare or remove.
    if (existing || !u.aliases.empty()) sync_aliases(u);
}

void ViewWriter::address_conflict(std::string_view key, std::string_view dn, std::string_view other_dn) {
    ++counts_.conflicts;
    counts_.warn(fmt::format("{} is the address of both {} and {}: {} kept", key, dn, other_dn, std::min(dn, other_dn)));
}

void ViewWriter::sync_aliases(const DirectoryUser& u) {
    for (const auto& alias : txn_.aliases_of(u.key)) {
        if (std::binary_search(u.aliases.begin(), u.aliases.end(), alias)) continue;
        txn_.remove_alias(alias);
        ++counts_.aliases_removed;
        if (change_) change_(fmt::format("unalias {}", alias));
        reassign(alias, u.key);
    }
    std::vector<std::string> hidden;  // sorted, as u.aliases
    for (const auto& alias : u.aliases) {
        if (txn_.user(alias)) {
            ++counts_.conflicts;
            counts_.warn(fmt::format("{}: alias {} is a user's address: ignored", u.key, alias));
            // A full sync may yet remove that user (remove_unseen): the alias is then this
            // user's, or a smaller key's listing it too, as a sync of the map without it gives.
            if (!alias_owner_) {
                const auto [waiting, first] = hidden_aliases_.try_emplace(alias, u.key);
                if (!first && u.key < waiting->second) waiting->second = u.key;
            }
            hidden.push_back(alias);
            continue;
        }
        if (alias_owner_) {
            const auto owner = alias_owner_(alias);
            if (owner && *owner != u.key) {
                ++counts_.conflicts;
                counts_.warn(fmt::format("{} is an alias of both {} and {}: {} kept", alias, *owner, u.key, *owner));
                if (txn_.alias_primary(alias) != owner && txn_.user(*owner)) txn_.put_alias(alias, *owner);
                continue;
            }
        }
        const bool claimed_before = !seen_aliases_.insert(hash128(alias));
        const auto primary = txn_.alias_primary(alias);
        if (primary && *primary == u.key) continue;
        if (primary && claimed_before) {
            // Two users give the same alias: the smaller key keeps it, on every relay.
            ++counts_.conflicts;
            counts_.warn(fmt::format("{} is an alias of both {} and {}: {} kept", alias, *primary, u.key,
                                     std::min(*primary, u.key)));
            if (*primary < u.key) continue;
        }
        txn_.put_alias(alias, u.key);
        ++counts_.aliases_added;
        if (change_) change_(fmt::format("alias {} -> {}", alias, u.key));
    }
    record_hidden(u.key, hidden);
}

void ViewWriter::record_hidden(const std::string& key, const std::vector<std::string>& hidden) {
    // The map remembers them, not only this pass or this follower: whoever removes the user
    // whose address hides one (the admin's `remove` too) gives it to this user then (MapTxn).
    const auto before = txn_.hidden_aliases_of(key);
    for (const auto& alias : before)
        if (!std::binary_search(hidden.begin(), hidden.end(), alias)) txn_.remove_hidden_alias(alias, key);
    for (const auto& alias : hidden)
        if (!std::binary_search(before.begin(), before.end(), alias)) txn_.put_hidden_alias(alias, key);
}

void ViewWriter::reassign(const std::string& alias, std::string_view from) {
    std::optional<std::string> owner;
    if (alias_owner_) {
        owner = alias_owner_(alias);
    } else if (const auto waiting = hidden_aliases_.find(alias); waiting != hidden_aliases_.end()) {
        owner = waiting->second;
    }
    if (!owner || *owner == from || !txn_.user(*owner) || txn_.user(alias)) return;
    if (txn_.alias_primary(alias) == owner) return;  // remove_user gave it already (hidden aliases)
    txn_.put_alias(alias, *owner);
    ++counts_.aliases_added;
    if (change_) change_(fmt::format("alias {} -> {}", alias, *owner));
}

bool ViewWriter::remove(std::string_view key, bool renamed) {
    const auto existing = txn_.user(key);
    if (!existing || existing->owner != Owner::directory) return false;
    const auto aliases = txn_.aliases_of(key);
    // A user's address is no alias while the user is there (upsert, sync_aliases); gone, it is
    // the alias of a user listing it, as a sync of the map without that user would make it:
    // remove_user gives it to the one the map records (hidden aliases), reassign to the one this
    // pass or follower knows of, which wins where the two differ: in a full sync the map may
    // still name a user this pass has not seen (removed in turn by remove_unseen).
    txn_.remove_user(key, [&](std::string_view address, std::string_view primary) {
        ++counts_.aliases_added;
        if (change_) change_(fmt::format("alias {} -> {}", address, primary));
    });
    for (const auto& alias : aliases) reassign(alias, key);
    reassign(std::string(key), key);
    ++counts_.removed;
    counts_.renamed += renamed ? 1 : 0;
    if (change_) change_(fmt::format("remove {}{}", key, renamed ? " (its entry gives another address now)" : ""));
    return true;
}

bool ViewWriter::renamed(const UserRecord& r) const {
    if (renamed_to_.size() == 0) return false;
    // A user moved back to the source on the way is counted as one (a mass mistake may do both).
    const std::string_view routed = r.state != State::source ? " routed" : "";
    const auto given = [&](std::string_view kind, const std::string& id) {
        return !id.empty() && renamed_to_.contains(hash128(fmt::format("{} {}{}", kind, id, routed)));
    };
    return given("uuid", r.entry_uuid) || given("dn", r.dn);
}

void ViewWriter::remove_unseen(const DirectoryConfig& config, bool force, std::size_t earlier_removed,
                               std::size_t earlier_demoted) {
    std::vector<std::pair<std::string, bool>> unseen;  // key, and whether its entry was seen (renamed)
    std::size_t renames = 0;
    std::size_t owned = 0;
    txn_.for_each_user([&](std::string_view key, const UserRecord& r) {
        if (r.owner != Owner::directory) return true;  // the admin's users stay (design 13.1)
        ++owned;
        if (seen_users_.contains(hash128(key))) return true;
        // Its entry is still here under another primary address (a rename, a mail value moved
        // first): no user left, so not one of the mass mistakes max_removals guards against,
        // and a rename of many must not hold every other change of the pass.
        const bool entry_seen = renamed(r);
        unseen.emplace_back(key, entry_seen);
        renames += entry_seen ? 1 : 0;
        return true;
    });
    // The base is the users the directory owned before this pass (not those it added: 20 renames
    // counted twice raised the limit of 30 users at 10% from 3 to 5) and before the window's
    // removals, as the follower's (follower.cpp, within_removal_window): those the earlier polls
    // removed are added back.
    const std::size_t owned_before = owned - std::min(owned, newly_owned_);
    const std::size_t limit = config.removal_limit(owned_before + earlier_removed);
    const std::size_t earlier = earlier_removed + earlier_demoted;
    const std::size_t gone = unseen.size() - renames;
    if (gone + counts_.demoted + earlier > limit && !force)
        throw RemovalLimitExceeded(gone, counts_.demoted, limit, owned_before, earlier);
    for (const auto& [key, entry_seen] : unseen) remove(key, entry_seen);
}

}  // namespace coexist::directory
