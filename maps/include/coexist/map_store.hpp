// Admin-side access to the map, for coexist-map: every command runs in one write transaction
// (all of it or nothing), every change is written to the audit trail in that same transaction,
// and a full map grows instead of failing.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coexist/accounts.hpp"  // current_user_name() for ChangeContext
#include "coexist/map_reader.hpp"
#include "coexist/record.hpp"

namespace coexist {

// One line of the audit trail: what changed for one address, when, by whom.
struct AuditEntry {
    std::int64_t time = 0;
    std::string address;
    std::string who;        // login name of the user who ran the command
    std::string command;    // "import users.csv", "set", "remove", ...
    std::string old_value;  // "migrated", "source target=x@y", "alias of p@d", "" when none
    std::string new_value;
    std::string batch;
    // Its place in the map's one audit sequence (1, 2, ...: the order the changes were
    // committed in, across all addresses); 0 in an entry not yet written.
    std::uint64_t sequence = 0;
};

// Who and what a write transaction is for; stamped on each audit entry it writes.
struct ChangeContext {
    std::string who;
    std::string command;
    std::int64_t time = 0;
};

class MapTxnImpl;

// The map schema version this build writes (schema.hpp), as stored in `meta`.
std::string_view written_schema_version();
// True for the meta keys the map keeps for itself and rebuilds (the schema version, the audit
// sequence, the per-domain user counts): a dump leaves them out, restore recomputes them.
bool derived_meta_key(std::string_view key);

// Operations inside one transaction. Keys are canonical addresses (lowercase@managed-domain).
class MapTxn {
public:
    explicit MapTxn(MapTxnImpl& impl) : impl_(impl) {}

    std::optional<UserRecord> user(std::string_view key);
    std::optional<std::string> alias_primary(std::string_view alias);
    std::vector<std::string> aliases_of(std::string_view primary);

    // Writes the user (audited when state, target or batch change; `changed` is set here).
    void put_user(std::string_view key, UserRecord record);
    // The same, for a caller that has just read the user's record (`old`, as user(key) gave it
    // in this transaction): saves the second lookup on a million-user sync.
    void put_user(std::string_view key, UserRecord record, const std::optional<UserRecord>& old);
    // Removes the user and its aliases; false if there was no such user. Its address, once
    // free, is the alias of the directory user that lists it (hidden_alias_owner), as the next
    // full sync would make it: `handed_back` is told (address, that user), after the audit.
    bool remove_user(std::string_view key,
                     const std::function<void(std::string_view address, std::string_view primary)>& handed_back = {});
    void put_alias(std::string_view alias, std::string_view primary);
    bool remove_alias(std::string_view alias);

    // Hidden aliases (design 13.1): an alias a directory-owned user lists in the directory while
    // it is another user's address in the map (a user set by hand before the directory listed
    // it, or another entry's mail), so the map cannot give it to the directory user. Kept by the
    // directory's sync in the transaction of the view they come from; remove_user() reads them,
    // so that whoever removes that address, the admin included, gives it to the directory user
    // in the same transaction. Not routing: no audit entry, and the daemons never read them.
    // The aliases `claimant` lists that are hidden, in key order.
    std::vector<std::string> hidden_aliases_of(std::string_view claimant);
    // The directory user that gets `address` when it is free: the smallest key listing it of the
    // directory-owned users in the map (the rule of a full sync); nullopt when none lists it.
    std::optional<std::string> hidden_alias_owner(std::string_view address);
    void put_hidden_alias(std::string_view alias, std::string_view claimant);
    void remove_hidden_alias(std::string_view alias, std::string_view claimant);

    // The map's bookkeeping (schema.hpp's meta keys, e.g. the directory's sync state). put_meta
    // is not audited: it records how the map was made, not what routes.
    std::optional<std::string> meta(std::string_view key);
    void put_meta(std::string_view key, std::string_view value);
    // An audit entry for a change that is not a record write (an override the directory caught
    // up with, a removal held back by the safety limit).
    void audit_note(std::string_view address, std::string old_value, std::string new_value);

    // Visits users (and aliases) in key order; stop early by returning false.
    void for_each_user(const std::function<bool(std::string_view, const UserRecord&)>& visit);
    // The same from the first user whose key is >= `from`: a caller that removes users as it
    // goes starts again where it stopped.
    void for_each_user(std::string_view from, const std::function<bool(std::string_view, const UserRecord&)>& visit);
    void for_each_alias(const std::function<bool(std::string_view, std::string_view)>& visit);
    std::vector<AuditEntry> history(std::string_view address);
    // Every audit entry, in key order (by address, then sequence); stop early by returning false.
    void for_each_audit(const std::function<bool(const AuditEntry&)>& visit);
    // Every entry of `meta` (schema.hpp and coexist::meta keys), in key order.
    void for_each_meta(const std::function<bool(std::string_view, std::string_view)>& visit);

    // For `coexist-map restore` only (a dump written back as it was, history included): these
    // write exactly what they are given, with no audit entry and the stored times kept.
    // clear() empties the map (users, aliases, hidden aliases, audit trail, meta) down to a
    // fresh schema.
    void clear();
    void restore_user(std::string_view key, const UserRecord& record);
    void restore_alias(std::string_view alias, std::string_view primary);
    // False when an entry of that address and sequence is there already.
    bool restore_audit(const AuditEntry& entry);

    // Stores every scheduled change due at `now` (unix time, s) as the user's state (or override),
    // each audited at its own time. MapStore::write() calls it first in every write transaction.
    // Returns how many it applied.
    std::size_t apply_due_changes(std::int64_t now);

    // Scratch space for the command running this write transaction (import's staged rows, the
    // keys a file has named): named databases of their own, created on first use and dropped
    // before the commit, so no reader ever sees them and memory holds nothing but their pages.
    // Two, so that a command can keep its large entries apart from the few it scans by prefix.
    // Throw std::logic_error in a read transaction. A value read is valid until the next write
    // in this transaction.
    enum class Scratch { index, rows };
    // Adds `key` unless it is there: then returns its value and writes nothing.
    std::optional<std::string_view> scratch_insert(Scratch s, std::string_view key, std::string_view value);
    void scratch_put(Scratch s, std::string_view key, std::string_view value);
    bool scratch_del(Scratch s, std::string_view key);  // false if it was not there
    std::optional<std::string_view> scratch_get(Scratch s, std::string_view key);
    // Visits the entries whose key starts with `prefix` ("": all), in key order; stop early by
    // returning false. The visit may write to the map and read any scratch, but not write to
    // `s`; the views it gets last until its first write.
    void for_each_scratch(Scratch s, std::string_view prefix,
                          const std::function<bool(std::string_view, std::string_view)>& visit);

    std::size_t user_count();
    std::size_t alias_count();
    std::size_t audit_count();
    // The schema version stored in the map ("2"; "1" for a 0.1.0 map a writer has not re-keyed).
    std::string schema_version();

private:
    MapTxnImpl& impl_;
};

class MapStore {
public:
    enum class Mode { read_only, read_write, create };

    // max_size: bytes of address space to map (the file grows only with the data).
    // create: makes the directory (0750 + setgid, group `group` when given: the daemons' primary
    // group) and the databases if missing. A writer reclaims the reader slots of dead processes.
    // Throws MapUnavailable (naming data.mdb when the file is damaged).
    MapStore(const std::string& path, std::size_t max_size, Mode mode, std::optional<gid_t> group = std::nullopt);
    ~MapStore();
    MapStore(const MapStore&) = delete;
    MapStore& operator=(const MapStore&) = delete;

    // Runs `change` in one write transaction and commits it. If the map fills up, the
    // transaction is thrown away, the map doubled, and `change` run again from the start, so
    // it must not have effects outside the transaction; the same when another writer grew the
    // map while this one waited (its size is re-read). Exceptions from `change` abort it.
    void write(const ChangeContext& context, const std::function<void(MapTxn&)>& change);
    void read(const std::function<void(MapTxn&)>& visit);

    std::size_t map_size() const;
    std::size_t used_bytes() const;
    const std::string& path() const { return path_; }

    // True when the map's data.mdb or lock.mdb is no longer the file this store opened (renamed
    // over, or removed; Environment::files_replaced). write() then refuses, and while this
    // process keeps the old lock.mdb open a data.mdb renamed in alone is refused by every other
    // program too: a long-lived writer (sync --follow) looks while it waits and lets go. Two
    // stat calls; never throws.
    bool files_replaced() const;

    struct Handles;  // the environment and its database handles (map_store.cpp)

private:
    std::string path_;
    std::unique_ptr<Handles> handles_;
};

}  // namespace coexist
