// Writes the directory's view of users into the map, inside one of MapStore's write
// transactions (design 9, 13.1): adds, changes, removals and aliases, each audited by the
// transaction's ChangeContext ("sync ldap://..."). The same writer serves a full sync (every
// user visited, then the unvisited directory-owned users removed, within the safety limit) and
// the follower's incremental changes.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "coexist/map_store.hpp"
#include "directory_user.hpp"
#include "key_hash.hpp"

namespace coexist::directory {

// What a sync did (or, dry, would do).
struct SyncCounts {
    std::size_t entries = 0;          // entries read from the directory
    std::size_t users = 0;            // of which users of managed domains
    std::size_t added = 0, changed = 0, removed = 0;
    std::size_t renamed = 0;          // of `removed`: the entry is still a user, under another address
    std::size_t aliases_added = 0, aliases_removed = 0;
    std::size_t overrides = 0;        // users whose admin override wins over the directory
    std::size_t overrides_dropped = 0;  // overrides the directory caught up with
    std::size_t demoted = 0;          // directory users moved from migrated or dual to source
    std::size_t removals_held = 0;    // removals not made: beyond max_removals
    std::size_t conflicts = 0;        // addresses claimed twice; the smaller DN / key wins
    std::vector<std::string> warnings;  // the first kMaxWarnings, for the report and the log

    static constexpr std::size_t kMaxWarnings = 100;
    void warn(std::string text) {
        if (warnings.size() < kMaxWarnings) warnings.push_back(std::move(text));
    }
};

// A full sync would remove, or move back to the source, more directory-owned users than
// [directory] max_removals allows: the two mass mistakes (a wrong base or filter drops users; an
// emptied or wrong group un-migrates them) count against the one limit.
class RemovalLimitExceeded : public std::runtime_error {
public:
    // `earlier`: removals and demotions earlier passes made within the same 60 s (polling).
    RemovalLimitExceeded(std::size_t would_remove, std::size_t would_demote, std::size_t limit, std::size_t owned,
                         std::size_t earlier = 0);
    std::size_t would_remove, would_demote, limit, owned;
};

class ViewWriter {
public:
    // `change`: called with one line per change ("add KEY STATE", "change KEY: OLD -> NEW",
    // "remove KEY", "alias ALIAS -> KEY", "unalias ALIAS"), for --dry-run; may be empty.
    ViewWriter(MapTxn& txn, SyncCounts& counts, std::function<void(const std::string&)> change = {});

    // Incremental use (the follower): tells whether the entry DN is still in the directory and
    // still gives `key` as its address, so an address claimed by two entries keeps going to the
    // smaller DN as in a full sync. Replaces the full sync's test (a key upserted twice in this
    // pass): the follower may upsert a key again in one transaction once its holder has left.
    void set_present(std::function<bool(std::string_view dn, std::string_view key)> present) {
        present_ = std::move(present);
    }

    // Incremental use: which user the directory's whole view gives `alias` to (the smallest key
    // of those listing it), so the follower ends where a full sync ends whatever order the
    // changes came in; an alias a user drops passes to the next one listing it.
    void set_alias_owner(std::function<std::optional<std::string>(std::string_view alias)> owner) {
        alias_owner_ = std::move(owner);
    }

    // Makes the map's record of u.key and its aliases equal to the directory's. Keeps the
    // admin's override (and converts a differing state of an admin-owned record the directory
    // takes over into one); drops an override the directory caught up with.
    void upsert(const DirectoryUser& u);
    // The entry behind `key` left the directory (deleted, renamed out of base, no longer
    // matching the filter), or, `renamed`, now gives another primary address: removes the user
    // if the directory owns it. False if not.
    bool remove(std::string_view key, bool renamed = false);

    // Full sync only, after every entry was upserted: removes the directory-owned users that
    // were not, unless they and the users this pass moved back to the source are together more
    // than config.removal_limit() of the directory-owned users and `force` is false: then it
    // throws RemovalLimitExceeded, before removing any (the caller's transaction is aborted, so
    // the demotions already written go with it). `earlier_removed` and `earlier_demoted`: what
    // earlier passes within max_removals' 60 s window removed and moved back (a polling
    // follower's earlier polls), counted against the same limit, whose base they are part of.
    void remove_unseen(const DirectoryConfig& config, bool force, std::size_t earlier_removed = 0,
                       std::size_t earlier_demoted = 0);

    // Two entries give `key` as their address; the one with the smaller DN keeps it (upsert's
    // rule). Counted and warned in the report; for the follower, which decides it itself.
    void address_conflict(std::string_view key, std::string_view dn, std::string_view other_dn);

private:
    void sync_aliases(const DirectoryUser& u);
    // Makes the map's hidden aliases of `key` (MapTxn::hidden_aliases_of) equal to `hidden`
    // (sorted): the aliases it lists that are users' addresses.
    void record_hidden(const std::string& key, const std::vector<std::string>& hidden);
    // Gives a freed alias (or a removed user's address) to the user the directory's view gives
    // it to, if any: the follower's alias_owner, or a full sync's hidden_aliases_.
    void reassign(const std::string& alias, std::string_view from);

    MapTxn& txn_;
    SyncCounts& counts_;
    std::function<void(const std::string&)> change_;
    std::function<bool(std::string_view, std::string_view)> present_;
    std::function<std::optional<std::string>(std::string_view)> alias_owner_;
    // Keys (and aliases) visited in this pass, as hashes (key_hash.hpp): 16 bytes a user, not a
    // copy of the directory.
    Hash128Set seen_users_, seen_aliases_;
    // The entries new at a key in this pass (added, or taking over another entry's address:
    // entryUUID and DN, each again with " routed" when its state is not source): a key not seen
    // whose entry gives another now is a primary address changed, not a user gone, and does
    // not count against max_removals unless it also moved back to the source. Only those, as
    // only they can be renames: a million-user initial sync into an empty map keeps none (the
    // limit on its memory).
    Hash128Set renamed_to_;
    bool may_rename_ = false;  // the map had users when the pass began
    std::size_t newly_owned_ = 0;  // keys this pass made the directory's (added, or taken over)
    bool counted_users_ = false;
    // Whether the entry of a directory user record gives another, added key in this pass.
    bool renamed(const UserRecord& r) const;
    // Full sync: aliases listed by a user of this pass but hidden by a user's address in the map,
    // and the smallest key listing each; given to it if remove_unseen removes that user. Only
    // such conflicts are kept, not every alias.
    std::unordered_map<std::string, std::string> hidden_aliases_;
};

}  // namespace coexist::directory
