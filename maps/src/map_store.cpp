#include "coexist/map_store.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>

#include <ctime>
#include <fmt/format.h>
#include <vector>

#include "coexist/canonical_address.hpp"
#include "coexist/utc_time.hpp"
#include "lmdb.hpp"
#include "map_files.hpp"
#include "schema.hpp"

namespace coexist {

namespace {

// user_aliases: primary \0 alias -> "" (the reverse index that lets a user's aliases be listed
// and removed without scanning every alias).
constexpr const char* kUserAliases = "user_aliases";
// schedule: be64(pending_at) || primary -> "" (the users with a scheduled change, in time order,
// so that a writer finds the due ones without reading every user).
constexpr const char* kSchedule = "schedule";
// hidden_aliases (MapTxn::hidden_aliases_of): each pair twice, so that both questions are one
// prefix seek: "a" alias \0 claimant -> "" (who lists this address) and "u" claimant \0 alias
// -> "" (what this user lists). Few entries: only aliases another user's address hides.
constexpr const char* kHiddenAliases = "hidden_aliases";
constexpr std::size_t kMaxMapSize = std::size_t{1} << 40;
// MapTxn's scratch databases: exist only inside a write transaction (dropped before commit).
constexpr const char* kScratchNames[] = {"scratch", "scratch_rows"};

std::string reverse_key(std::string_view primary, std::string_view alias) {
    std::string k(primary);
    k.push_back('\0');
    k.append(alias);
    return k;
}

std::string hidden_by_alias(std::string_view alias, std::string_view claimant) {
    return std::string("a").append(alias).append(1, '\0').append(claimant);
}
std::string hidden_by_claimant(std::string_view claimant, std::string_view alias) {
    return std::string("u").append(claimant).append(1, '\0').append(alias);
}

std::string be64(std::uint64_t v) {
    std::string out(8, '\0');
    for (int i = 7; i >= 0; --i, v >>= 8) out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
    return out;
}

void put_field(std::string& out, std::string_view f) {
    const std::size_t n = std::min<std::size_t>(f.size(), 0xffff);
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
    out.append(f.substr(0, n));
}

void append_be64(std::string& out, std::uint64_t v) {
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Audit encoding v1: 0x01, be64 time, then who, command, old, new, batch as length-prefixed
// fields. Into `out` (cleared first): a writer of many entries reuses one buffer.
void encode_audit_into(std::string& out, std::int64_t time, std::string_view who, std::string_view command,
                       std::string_view old_value, std::string_view new_value, std::string_view batch) {
    out.clear();
    out.push_back('\x01');
    append_be64(out, static_cast<std::uint64_t>(time));
    for (const std::string_view f : {who, command, old_value, new_value, batch}) put_field(out, f);
}

std::string encode_audit(const AuditEntry& e) {
    std::string out;
    encode_audit_into(out, e.time, e.who, e.command, e.old_value, e.new_value, e.batch);
    return out;
}

void audit_key_into(std::string& key, std::string_view address, std::uint64_t sequence) {
    key.assign(address);
    key.push_back('\0');
    append_be64(key, sequence);
}

std::string audit_key(std::string_view address, std::uint64_t sequence) {
    std::string key;
    audit_key_into(key, address, sequence);
    return key;
}

std::optional<AuditEntry> decode_audit(std::string_view address, std::uint64_t sequence, std::string_view b) {
    if (b.size() < 9 || b[0] != '\x01') return std::nullopt;
    AuditEntry e;
    e.address = std::string(address);
    e.sequence = sequence;
    std::uint64_t t = 0;
    for (std::size_t i = 1; i < 9; ++i) t = (t << 8) | static_cast<unsigned char>(b[i]);
    e.time = static_cast<std::int64_t>(t);
    std::size_t pos = 9;
    for (auto* f : {&e.who, &e.command, &e.old_value, &e.new_value, &e.batch}) {
        if (b.size() - pos < 2) return std::nullopt;
        const std::size_t n = (static_cast<std::size_t>(static_cast<unsigned char>(b[pos])) << 8) |
                              static_cast<unsigned char>(b[pos + 1]);
        pos += 2;
        if (b.size() - pos < n) return std::nullopt;
        *f = std::string(b.substr(pos, n));
        pos += n;
    }
    return e;
}

// The sequence number at the end of an audit key (address \0 be64(sequence)).
std::uint64_t audit_sequence_of(std::string_view key) {
    if (key.size() < 8) return 0;
    std::uint64_t v = 0;
    for (std::size_t i = key.size() - 8; i < key.size(); ++i) v = (v << 8) | static_cast<unsigned char>(key[i]);
    return v;
}

std::string describe(const std::optional<UserRecord>& r) {
    if (!r) return {};
    std::string s(to_string(r->state));
    if (!r->target.empty()) s += " target=" + r->target;
    if (r->override_state) s += fmt::format(" override={}", to_string(*r->override_state));
    if (r->owner == Owner::directory) s += " (directory)";
    if (r->pending_state)
        s += fmt::format(" pending={} at {}", to_string(*r->pending_state), utc_timestamp(r->pending_at));
    return s;
}

std::string schedule_key(std::int64_t at, std::string_view primary) {
    std::string k = be64(static_cast<std::uint64_t>(at));
    k.append(primary);
    return k;
}

// Counts the users of each domain from scratch: for maps written before the counts were kept.
void recount_domains(Transaction& txn, MDB_dbi users, MDB_dbi meta) {
    std::map<std::string, std::size_t, std::less<>> counts;
    Cursor c(txn, users);
    std::string_view k, v;
    for (bool ok = c.seek("", k, v); ok; ok = c.next(k, v)) ++counts[std::string(schema::domain_of_key(k))];
    for (const auto& [domain, n] : counts) txn.put(meta, schema::domain_users_key(domain), std::to_string(n));
    txn.put(meta, schema::kDomainCountsKey, "1");
}

// Begins a transaction, re-adopting the map size first when another writer grew the map since
// we opened it (we waited behind its write lock; our mapping no longer covers its data).
// coexist-map runs one transaction at a time, so none of ours is open to be remapped under.
Transaction begin(Environment& env, Transaction::Mode mode) {
    for (int attempt = 0; attempt < 3; ++attempt) {
        try {
            return Transaction(env, mode);
        } catch (const MdbError& e) {
            if (e.code() != MDB_MAP_RESIZED) throw;
            env.set_map_size(0);
        }
    }
    return Transaction(env, mode);
}

}  // namespace

// Re-keys a map written by 0.1.0 (schema 1) to canonical keys (design 13.2), in the opener's
// write transaction: all of it or nothing. Defined below Handles.
void upgrade_keys(Transaction& txn, MapStore::Handles& h);

struct MapStore::Handles {
    Environment env;
    MDB_dbi users{}, aliases{}, user_aliases{}, meta{}, audit{}, schedule{}, hidden_aliases{};
    bool has_schedule = false;  // a map no writer of 0.3 or later has opened has none
    bool has_hidden_aliases = false;  // nor one that no writer since hidden aliases has opened

    Handles(const std::string& path, std::size_t map_size, Mode mode)
        : env(path, mode == Mode::read_only ? MDB_RDONLY : 0, map_size) {
        const bool create = mode == Mode::create;
        Transaction txn = begin(env, mode == Mode::read_only ? Transaction::Mode::read : Transaction::Mode::write);
        meta = schema::open_meta(txn, path, create);
        const auto version = txn.get(meta, schema::kSchemaVersionKey);
        if (!version && create) {
            txn.put(meta, schema::kSchemaVersionKey, schema::kSchemaVersion);
        } else if (!version || !schema::readable_schema(*version)) {
            throw MapUnavailable(path + ": schema version " + (version ? std::string(*version) : "missing") +
                                 " is not one this build reads (" + std::string(schema::kSchemaVersion) + ")");
        }
        const bool ascii_keys = version && *version == schema::kSchemaVersionAsciiKeys;
        users = txn.open_db(schema::kUsers, create);
        aliases = txn.open_db(schema::kAliases, create);
        user_aliases = txn.open_db(kUserAliases, create);
        audit = txn.open_db(schema::kAudit, create);
        if (mode != Mode::read_only) {
            schedule = txn.open_db(kSchedule, true);
            has_schedule = true;
        } else {
            try {
                schedule = txn.open_db(kSchedule, false);
                has_schedule = true;
            } catch (const MdbError& e) {
                if (e.code() != MDB_NOTFOUND) throw;
            }
        }
        try {
            hidden_aliases = txn.open_db(kHiddenAliases, false);
            has_hidden_aliases = true;
        } catch (const MdbError& e) {
            if (e.code() != MDB_NOTFOUND) throw;
        }
        // Empty in a map written before them: the directory's next full read records them (a
        // follower does not resume from a cookie stored before, see follower.cpp).
        if (mode != Mode::read_only && !has_hidden_aliases) {
            hidden_aliases = txn.open_db(kHiddenAliases, true);
            has_hidden_aliases = true;
        }
        if (mode != Mode::read_only && ascii_keys) {
            upgrade_keys(txn, *this);
            recount_domains(txn, users, meta);
            txn.put(meta, schema::kSchemaVersionKey, schema::kSchemaVersion);
        }
        if (mode != Mode::read_only && !txn.get(meta, schema::kDomainCountsKey)) recount_domains(txn, users, meta);
        txn.commit();
        // A reader that died inside a transaction pins the pages it saw; the writer is the one
        // that would otherwise grow the file around them.
        if (mode != Mode::read_only) env.clear_stale_readers();
    }
};

namespace {

// One audit entry of the upgrade, numbered after the map's last one.
void audit_upgrade(Transaction& txn, MapStore::Handles& h, std::uint64_t& sequence, std::string_view address,
                   std::string old_value, std::string new_value) {
    AuditEntry e{static_cast<std::int64_t>(::time(nullptr)), std::string(address), current_user_name(),
                 "schema upgrade 1 -> 2 (canonical keys)", std::move(old_value), std::move(new_value), {}};
    txn.put(h.audit, audit_key(address, ++sequence), encode_audit(e));
}

// Every entry of `dbi` whose key is not canonical: (old key, canonical key, value).
struct Rekey {
    std::string from, to, value;
};
std::vector<Rekey> non_canonical(Transaction& txn, MDB_dbi dbi) {
    std::vector<Rekey> out;
    Cursor c(txn, dbi);
    std::string_view k, v;
    for (bool ok = c.seek("", k, v); ok; ok = c.next(k, v)) {
        const auto canonical = canonical_address(k);
        if (canonical && *canonical != k) out.push_back({std::string(k), *canonical, std::string(v)});
    }
    return out;
}

std::string canonical_or_same(std::string_view key) {
    auto c = canonical_address(key);
    return c ? *c : std::string(key);
}

}  // namespace

void upgrade_keys(Transaction& txn, MapStore::Handles& h) {
    const auto s = txn.get(h.meta, schema::kAuditSequenceKey);
    std::uint64_t sequence = s ? schema::parse_counter(*s) : 0;
    // Users: a record whose canonical key is taken already (0.1.0 kept "Bob" and bob apart only
    // for quoted or non-ASCII spellings) yields to the more recently changed one; the audit
    // trail keeps both.
    for (const auto& r : non_canonical(txn, h.users)) {
        txn.del(h.users, r.from);
        const auto existing = txn.get(h.users, r.to);
        const auto mine = decode_user(r.value);
        std::optional<UserRecord> theirs;
        if (existing) theirs = decode_user(*existing);
        if (existing && (!mine || (theirs && theirs->changed >= mine->changed))) {
            audit_upgrade(txn, h, sequence, r.to, "key " + r.from + " " + describe(mine), "merged into " + r.to);
            continue;
        }
        txn.put(h.users, r.to, r.value);
        audit_upgrade(txn, h, sequence, r.to, "key " + r.from, "key " + r.to);
    }
    // Aliases: keys and the primaries they name; the reverse index is rebuilt from them.
    std::vector<std::pair<std::string, std::string>> all;
    {
        Cursor c(txn, h.aliases);
        std::string_view k, v;
        for (bool ok = c.seek("", k, v); ok; ok = c.next(k, v)) {
            const auto primary = schema::decode_alias(v);
            if (!primary) throw MapUnavailable("unreadable alias record for " + std::string(k));
            all.emplace_back(std::string(k), std::string(*primary));
        }
    }
    for (const auto& [alias, primary] : all) {
        const std::string to = canonical_or_same(alias), to_primary = canonical_or_same(primary);
        if (to == alias && to_primary == primary) continue;
        txn.del(h.aliases, alias);
        txn.del(h.user_aliases, reverse_key(primary, alias));
        if (txn.get(h.users, to) || (to != alias && txn.get(h.aliases, to))) {
            audit_upgrade(txn, h, sequence, to, "alias " + alias + " -> " + primary, "dropped: " + to + " exists");
            continue;
        }
        txn.put(h.aliases, to, schema::encode_alias(to_primary));
        txn.put(h.user_aliases, reverse_key(to_primary, to), "");
        audit_upgrade(txn, h, sequence, to, "alias " + alias + " -> " + primary, "alias " + to + " -> " + to_primary);
    }
    txn.put(h.meta, schema::kAuditSequenceKey, std::to_string(sequence));
}

class MapTxnImpl {
public:
    MapTxnImpl(MapStore::Handles& h, Transaction& txn, const ChangeContext* context)
        : h(h), txn(txn), context(context) {}

    void audit(std::string_view address, std::string_view old_value, std::string_view new_value,
               std::string_view batch) {
        if (!context) throw std::logic_error("change outside a write transaction");
        if (!sequence) {
            const auto s = txn.get(h.meta, schema::kAuditSequenceKey);
            sequence = s ? schema::parse_counter(*s) : 0;
        }
        ++*sequence;
        audit_key_into(audit_key_buf, address, *sequence);
        encode_audit_into(audit_value_buf, context->time, context->who, context->command, old_value, new_value, batch);
        audit_cursor().put(audit_key_buf, audit_value_buf);
        dirty_sequence = true;
    }

    // Keeps the schedule index equal to the records' pending changes.
    void index_schedule(std::string_view key, const std::optional<UserRecord>& old, const UserRecord* now) {
        if (old && old->pending_state) txn.del(h.schedule, schedule_key(old->pending_at, key));
        if (now && now->pending_state) txn.put(h.schedule, schedule_key(now->pending_at, key), "");
    }

    // A user added (+1) or removed (-1): the domain's count changes in finish().
    void count_user(std::string_view key, long delta) {
        const std::string_view domain = schema::domain_of_key(key);
        auto at = domain_deltas.find(domain);  // a string made only for a domain not seen yet
        if (at == domain_deltas.end()) at = domain_deltas.emplace(std::string(domain), 0).first;
        at->second += delta;
    }

    MDB_dbi scratch_dbi(MapTxn::Scratch s) {
        if (!context) throw std::logic_error("scratch outside a write transaction");
        auto& dbi = scratch[static_cast<int>(s)];
        if (!dbi) dbi = txn.open_db(kScratchNames[static_cast<int>(s)], true);
        return *dbi;
    }

    // Cursors on users and audit, kept for the transaction: a write in key order (an import's)
    // lands next to the last one, where LMDB finds the page without a descent from the root.
    Cursor& users_cursor() {
        if (!users_at) users_at.emplace(txn, h.users);
        return *users_at;
    }
    Cursor& audit_cursor() {
        if (!audit_at) audit_at.emplace(txn, h.audit);
        return *audit_at;
    }
    // A full sync asks for each user's hidden aliases (nearly always none): one cursor for all.
    Cursor& hidden_cursor() {
        if (!hidden_at) hidden_at.emplace(txn, h.hidden_aliases);
        return *hidden_at;
    }
    // The rest of each hidden_aliases key that starts with `prefix` (see kHiddenAliases).
    std::vector<std::string> hidden_after(const std::string& prefix) {
        std::vector<std::string> out;
        if (!h.has_hidden_aliases) return out;
        std::string_view k, v;
        for (bool ok = hidden_cursor().seek(prefix, k, v); ok && k.starts_with(prefix); ok = hidden_cursor().next(k, v))
            out.emplace_back(k.substr(prefix.size()));
        return out;
    }

    // A scratch's own kept cursor, for its writes: a file sorted (or in runs) stages each row
    // next to the last one.
    Cursor& scratch_cursor(MapTxn::Scratch s) {
        auto& at = scratch_at[static_cast<int>(s)];
        if (!at) at.emplace(txn, scratch_dbi(s));
        return *at;
    }

    void finish() {
        // Closed before the commit, which frees a write transaction's cursors itself, and before
        // their databases are dropped.
        users_at.reset();
        audit_at.reset();
        hidden_at.reset();
        for (auto& at : scratch_at) at.reset();
        // Gone before the commit: its pages return to the free list, its name to nobody.
        for (const auto& dbi : scratch)
            if (dbi) check_mdb(mdb_drop(txn.get(), *dbi, 1), "mdb_drop");
        if (dirty_sequence) txn.put(h.meta, schema::kAuditSequenceKey, std::to_string(*sequence));
        for (const auto& [domain, delta] : domain_deltas) {
            if (delta == 0) continue;
            const std::string key = schema::domain_users_key(domain);
            const auto old = txn.get(h.meta, key);
            const long n = static_cast<long>(old ? schema::parse_counter(*old) : 0) + delta;
            txn.put(h.meta, key, std::to_string(n < 0 ? 0 : n));
        }
    }

    MapStore::Handles& h;
    Transaction& txn;
    const ChangeContext* context;
    std::optional<std::uint64_t> sequence;
    bool dirty_sequence = false;
    std::map<std::string, long, std::less<>> domain_deltas;
    std::optional<MDB_dbi> scratch[2];
    // audit()'s key and value, built in place: an import audits a million users.
    std::string audit_key_buf, audit_value_buf;
    // `txn` outlives this object (MapStore::write and read declare it first): these close before
    // it ends, if finish() has not closed them already.
    std::optional<Cursor> users_at, audit_at, hidden_at, scratch_at[2];
};

std::optional<UserRecord> MapTxn::user(std::string_view key) {
    const auto v = impl_.users_cursor().find(key);
    if (!v) return std::nullopt;
    auto r = decode_user(*v);
    if (!r) throw MapUnavailable("unreadable user record for " + std::string(key));
    return r;
}

std::optional<std::string> MapTxn::alias_primary(std::string_view alias) {
    const auto v = impl_.txn.get(impl_.h.aliases, alias);
    if (!v) return std::nullopt;
    const auto p = schema::decode_alias(*v);
    if (!p) throw MapUnavailable("unreadable alias record for " + std::string(alias));
    return std::string(*p);
}

std::vector<std::string> MapTxn::aliases_of(std::string_view primary) {
    std::vector<std::string> out;
    const std::string prefix = reverse_key(primary, "");
    Cursor c(impl_.txn, impl_.h.user_aliases);
    std::string_view k, v;
    for (bool ok = c.seek(prefix, k, v); ok && k.substr(0, prefix.size()) == prefix; ok = c.next(k, v))
        out.emplace_back(k.substr(prefix.size()));
    return out;
}

void MapTxn::put_user(std::string_view key, UserRecord record) { put_user(key, std::move(record), user(key)); }

void MapTxn::put_user(std::string_view key, UserRecord record, const std::optional<UserRecord>& old) {
    if (old) {
        UserRecord same = record;
        same.changed = old->changed;
        if (same == *old) return;  // nothing changes: no write, no audit line
    }
    record.changed = impl_.context ? impl_.context->time : 0;
    impl_.users_cursor().put(key, encode(record));
    if ((old && old->pending_state) || record.pending_state) impl_.index_schedule(key, old, &record);
    if (!old) impl_.count_user(key, +1);
    // A change of the entry's DN alone (a rename in the directory) does not change routing:
    // written, not audited.
    const std::string before = describe(old), after = describe(record);
    if (!old || before != after || old->batch != record.batch) impl_.audit(key, before, after, record.batch);
}

std::optional<std::string> MapTxn::meta(std::string_view key) {
    const auto v = impl_.txn.get(impl_.h.meta, key);
    if (!v) return std::nullopt;
    return std::string(*v);
}

void MapTxn::put_meta(std::string_view key, std::string_view value) { impl_.txn.put(impl_.h.meta, key, value); }

void MapTxn::audit_note(std::string_view address, std::string old_value, std::string new_value) {
    impl_.audit(address, std::move(old_value), std::move(new_value), "");
}

bool MapTxn::remove_user(std::string_view key,
                         const std::function<void(std::string_view, std::string_view)>& handed_back) {
    const auto old = user(key);
    if (!old) return false;
    for (const auto& a : aliases_of(key)) remove_alias(a);
    for (const auto& a : hidden_aliases_of(key)) remove_hidden_alias(a, key);  // a user gone lists nothing
    impl_.txn.del(impl_.h.users, key);
    if (old->pending_state) impl_.index_schedule(key, old, nullptr);
    impl_.count_user(key, -1);
    impl_.audit(key, describe(old), "", old->batch);
    // The address the user hid is free now. Left to the next full sync, it would be nobody's
    // until then (days, for a follower that applies only changes): an unknown user relayed to
    // the old system, or refused, although the directory says whose it is.
    const auto heir = hidden_alias_owner(key);
    // Not hidden any more: the heir holds it, the others list another user's alias, which the
    // directory's sync decides among its users as it always has.
    for (const auto& claimant : impl_.hidden_after(hidden_by_alias(key, ""))) remove_hidden_alias(key, claimant);
    if (heir) {
        put_alias(key, *heir);
        if (handed_back) handed_back(key, *heir);
    }
    return true;
}

void MapTxn::put_alias(std::string_view alias, std::string_view primary) {
    const auto old = alias_primary(alias);
    if (old && *old == primary) return;
    if (old) impl_.txn.del(impl_.h.user_aliases, reverse_key(*old, alias));
    impl_.txn.put(impl_.h.aliases, alias, schema::encode_alias(primary));
    impl_.txn.put(impl_.h.user_aliases, reverse_key(primary, alias), "");
    impl_.audit(alias, old ? "alias of " + *old : "", "alias of " + std::string(primary), "");
}

bool MapTxn::remove_alias(std::string_view alias) {
    const auto old = alias_primary(alias);
    if (!old) return false;
    impl_.txn.del(impl_.h.aliases, alias);
    impl_.txn.del(impl_.h.user_aliases, reverse_key(*old, alias));
    impl_.audit(alias, "alias of " + *old, "", "");
    return true;
}

std::vector<std::string> MapTxn::hidden_aliases_of(std::string_view claimant) {
    return impl_.hidden_after(hidden_by_claimant(claimant, ""));
}

std::optional<std::string> MapTxn::hidden_alias_owner(std::string_view address) {
    // In key order: the first claimant still a directory user is the smallest key listing it.
    for (auto& claimant : impl_.hidden_after(hidden_by_alias(address, ""))) {
        const auto r = user(claimant);
        if (r && r->owner == Owner::directory) return std::move(claimant);
    }
    return std::nullopt;
}

void MapTxn::put_hidden_alias(std::string_view alias, std::string_view claimant) {
    if (!impl_.context) throw std::logic_error("change outside a write transaction");
    impl_.txn.put(impl_.h.hidden_aliases, hidden_by_alias(alias, claimant), "");
    impl_.txn.put(impl_.h.hidden_aliases, hidden_by_claimant(claimant, alias), "");
}

void MapTxn::remove_hidden_alias(std::string_view alias, std::string_view claimant) {
    if (!impl_.context) throw std::logic_error("change outside a write transaction");
    impl_.txn.del(impl_.h.hidden_aliases, hidden_by_alias(alias, claimant));
    impl_.txn.del(impl_.h.hidden_aliases, hidden_by_claimant(claimant, alias));
}

void MapTxn::for_each_user(const std::function<bool(std::string_view, const UserRecord&)>& visit) {
    for_each_user("", visit);
}

void MapTxn::for_each_user(std::string_view from,
                           const std::function<bool(std::string_view, const UserRecord&)>& visit) {
    Cursor c(impl_.txn, impl_.h.users);
    std::string_view k, v;
    for (bool ok = c.seek(from, k, v); ok; ok = c.next(k, v)) {
        const auto r = decode_user(v);
        if (!r) throw MapUnavailable("unreadable user record for " + std::string(k));
        if (!visit(k, *r)) return;
    }
}

void MapTxn::for_each_alias(const std::function<bool(std::string_view, std::string_view)>& visit) {
    Cursor c(impl_.txn, impl_.h.aliases);
    std::string_view k, v;
    for (bool ok = c.seek("", k, v); ok; ok = c.next(k, v)) {
        const auto p = schema::decode_alias(v);
        if (!p) throw MapUnavailable("unreadable alias record for " + std::string(k));
        if (!visit(k, *p)) return;
    }
}

std::vector<AuditEntry> MapTxn::history(std::string_view address) {
    std::vector<AuditEntry> out;
    std::string prefix(address);
    prefix.push_back('\0');
    Cursor c(impl_.txn, impl_.h.audit);
    std::string_view k, v;
    for (bool ok = c.seek(prefix, k, v); ok && k.substr(0, prefix.size()) == prefix; ok = c.next(k, v)) {
        if (auto e = decode_audit(address, audit_sequence_of(k), v)) out.push_back(std::move(*e));
    }
    return out;
}

void MapTxn::for_each_audit(const std::function<bool(const AuditEntry&)>& visit) {
    Cursor c(impl_.txn, impl_.h.audit);
    std::string_view k, v;
    for (bool ok = c.seek("", k, v); ok; ok = c.next(k, v)) {
        const auto nul = k.find('\0');
        auto e = nul == std::string_view::npos ? std::nullopt : decode_audit(k.substr(0, nul), audit_sequence_of(k), v);
        if (!e) throw MapUnavailable("unreadable audit entry for " + std::string(k.substr(0, nul)));
        if (!visit(*e)) return;
    }
}

void MapTxn::for_each_meta(const std::function<bool(std::string_view, std::string_view)>& visit) {
    Cursor c(impl_.txn, impl_.h.meta);
    std::string_view k, v;
    for (bool ok = c.seek("", k, v); ok; ok = c.next(k, v))
        if (!visit(k, v)) return;
}

void MapTxn::clear() {
    if (!impl_.context) throw std::logic_error("change outside a write transaction");
    impl_.users_at.reset();  // on the databases about to be emptied
    impl_.audit_at.reset();
    impl_.hidden_at.reset();
    for (MDB_dbi dbi : {impl_.h.users, impl_.h.aliases, impl_.h.user_aliases, impl_.h.audit, impl_.h.meta})
        check_mdb(mdb_drop(impl_.txn.get(), dbi, 0), "mdb_drop");
    if (impl_.h.has_schedule) check_mdb(mdb_drop(impl_.txn.get(), impl_.h.schedule, 0), "mdb_drop");
    if (impl_.h.has_hidden_aliases) check_mdb(mdb_drop(impl_.txn.get(), impl_.h.hidden_aliases, 0), "mdb_drop");
    impl_.txn.put(impl_.h.meta, schema::kSchemaVersionKey, schema::kSchemaVersion);
    // Counted from zero by restore_user (finish() adds them up).
    impl_.txn.put(impl_.h.meta, schema::kDomainCountsKey, "1");
    impl_.domain_deltas.clear();
    impl_.sequence = 0;
    impl_.dirty_sequence = true;
}

void MapTxn::restore_user(std::string_view key, const UserRecord& record) {
    if (!impl_.context) throw std::logic_error("change outside a write transaction");
    const auto old = user(key);
    if (!old) impl_.count_user(key, +1);
    impl_.txn.put(impl_.h.users, key, encode(record));
    if ((old && old->pending_state) || record.pending_state) impl_.index_schedule(key, old, &record);
}

void MapTxn::restore_alias(std::string_view alias, std::string_view primary) {
    if (!impl_.context) throw std::logic_error("change outside a write transaction");
    if (const auto old = alias_primary(alias)) impl_.txn.del(impl_.h.user_aliases, reverse_key(*old, alias));
    impl_.txn.put(impl_.h.aliases, alias, schema::encode_alias(primary));
    impl_.txn.put(impl_.h.user_aliases, reverse_key(primary, alias), "");
}

bool MapTxn::restore_audit(const AuditEntry& e) {
    if (!impl_.context) throw std::logic_error("change outside a write transaction");
    const std::string key = audit_key(e.address, e.sequence);
    if (impl_.txn.get(impl_.h.audit, key)) return false;
    impl_.txn.put(impl_.h.audit, key, encode_audit(e));
    if (!impl_.sequence) {
        const auto s = impl_.txn.get(impl_.h.meta, schema::kAuditSequenceKey);
        impl_.sequence = s ? schema::parse_counter(*s) : 0;
    }
    // The next change after a restore is numbered after the restored ones.
    impl_.sequence = std::max(*impl_.sequence, e.sequence);
    impl_.dirty_sequence = true;
    return true;
}

std::size_t MapTxn::apply_due_changes(std::int64_t now) {
    if (!impl_.h.has_schedule || !impl_.context) return 0;
    std::vector<std::pair<std::int64_t, std::string>> due;
    {
        Cursor c(impl_.txn, impl_.h.schedule);
        std::string_view k, v;
        for (bool ok = c.seek("", k, v); ok && k.size() > 8; ok = c.next(k, v)) {
            std::uint64_t at = 0;
            for (std::size_t i = 0; i < 8; ++i) at = (at << 8) | static_cast<unsigned char>(k[i]);
            if (static_cast<std::int64_t>(at) > now) break;
            due.emplace_back(static_cast<std::int64_t>(at), std::string(k.substr(8)));
        }
    }
    const ChangeContext* command = impl_.context;
    std::size_t applied = 0;
    for (const auto& [at, key] : due) {
        const auto old = user(key);
        if (!old || !old->pending_state || old->pending_at != at) {  // a stale index entry: drop it
            impl_.txn.del(impl_.h.schedule, schedule_key(at, key));
            continue;
        }
        UserRecord record = *old;
        record.apply_due(now);
        // Audited at the second route() began to act on it, under the name of the command
        // that happened to store it.
        const ChangeContext scheduled{command->who, fmt::format("scheduled change due {} (stored by {})",
                                                                 utc_timestamp(at), command->command), at};
        impl_.context = &scheduled;
        put_user(key, std::move(record), old);
        impl_.context = command;
        ++applied;
    }
    return applied;
}

std::optional<std::string_view> MapTxn::scratch_insert(Scratch s, std::string_view key, std::string_view value) {
    return impl_.scratch_cursor(s).insert(key, value);
}

void MapTxn::scratch_put(Scratch s, std::string_view key, std::string_view value) {
    impl_.scratch_cursor(s).put(key, value);
}

bool MapTxn::scratch_del(Scratch s, std::string_view key) { return impl_.txn.del(impl_.scratch_dbi(s), key); }

std::optional<std::string_view> MapTxn::scratch_get(Scratch s, std::string_view key) {
    return impl_.txn.get(impl_.scratch_dbi(s), key);
}

void MapTxn::for_each_scratch(Scratch s, std::string_view prefix,
                              const std::function<bool(std::string_view, std::string_view)>& visit) {
    Cursor c(impl_.txn, impl_.scratch_dbi(s));
    std::string_view k, v;
    for (bool ok = c.seek(prefix, k, v); ok && k.starts_with(prefix); ok = c.next(k, v))
        if (!visit(k, v)) return;
}

std::size_t MapTxn::user_count() { return impl_.txn.entries(impl_.h.users); }
std::size_t MapTxn::alias_count() { return impl_.txn.entries(impl_.h.aliases); }
std::size_t MapTxn::audit_count() { return impl_.txn.entries(impl_.h.audit); }

std::string MapTxn::schema_version() {
    const auto v = impl_.txn.get(impl_.h.meta, schema::kSchemaVersionKey);
    return v ? std::string(*v) : std::string();
}

std::string_view written_schema_version() { return schema::kSchemaVersion; }

bool derived_meta_key(std::string_view key) {
    return key == schema::kSchemaVersionKey || key == schema::kAuditSequenceKey || key == schema::kDomainCountsKey ||
           key.starts_with(schema::kDomainUsersPrefix);
}

MapStore::MapStore(const std::string& path, std::size_t max_size, Mode mode, std::optional<gid_t> group)
    : path_(path) {
    if (mode == Mode::create) create_map_directory(path, group);
    try {
        handles_ = std::make_unique<Handles>(path, max_size, mode);
    } catch (const MdbError& e) {
        if (e.code() == ENOENT)
            throw MapUnavailable("no map at " + path + " (run 'coexist-map init' first)");
        throw MapUnavailable(e.what());
    }
}

MapStore::~MapStore() = default;

void MapStore::write(const ChangeContext& context, const std::function<void(MapTxn&)>& change) {
    // A long-lived writer (sync --follow) whose data.mdb or lock.mdb was renamed over or removed
    // would go on committing to a file nobody opens any more, or under a lock other writers no
    // longer take (see Transaction).
    if (files_replaced())
        throw MapUnavailable(path_ + "/data.mdb or lock.mdb was replaced or removed since this program opened the "
                             "map: nothing is written to the old files; start the program again");
    for (;;) {
        try {
            Transaction txn = begin(handles_->env, Transaction::Mode::write);
            MapTxnImpl impl(*handles_, txn, &context);
            MapTxn t(impl);
            // A scheduled change that is due is stored for good by whichever write comes first
            // (design 13.6); route() has acted on it since its time either way.
            t.apply_due_changes(context.time);
            change(t);
            impl.finish();
            txn.commit();
            return;
        } catch (const MdbError& e) {
            if (e.code() != MDB_MAP_FULL) throw MapUnavailable(e.what());
            // The transaction is gone (aborted by its destructor): grow and run the command
            // again. Readers in other processes see MDB_MAP_RESIZED and re-map.
            const std::size_t size = handles_->env.map_size();
            if (size >= kMaxMapSize) throw MapUnavailable(std::string(e.what()) + " (map is at its 1 TiB limit)");
            handles_->env.set_map_size(std::min(size * 2, kMaxMapSize));
        }
    }
}

void MapStore::read(const std::function<void(MapTxn&)>& visit) {
    try {
        Transaction txn = begin(handles_->env, Transaction::Mode::read);
        MapTxnImpl impl(*handles_, txn, nullptr);
        MapTxn t(impl);
        visit(t);
    } catch (const MdbError& e) {
        throw MapUnavailable(e.what());
    }
}

std::size_t MapStore::map_size() const { return handles_->env.map_size(); }

bool MapStore::files_replaced() const { return handles_->env.files_replaced(); }

std::size_t MapStore::used_bytes() const {
    MDB_envinfo info{};
    MDB_stat st{};
    check_mdb(mdb_env_info(handles_->env.get(), &info), "mdb_env_info");
    check_mdb(mdb_env_stat(handles_->env.get(), &st), "mdb_env_stat");
    return (info.me_last_pgno + 1) * static_cast<std::size_t>(st.ms_psize);
}


}  // namespace coexist
