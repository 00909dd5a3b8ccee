#include "coexist/map_store.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "lmdb.hpp"
#include "schema.hpp"

namespace coexist {

namespace {

// user_aliases: primary \0 alias -> "" (the reverse index that lets a user's aliases be listed
// and removed without scanning every alias).
constexpr const char* kUserAliases = "user_aliases";
constexpr std::size_t kMaxMapSize = std::size_t{1} << 40;

std::string reverse_key(std::string_view primary, std::string_view alias) {
    std::string k(primary);
    k.push_back('\0');
    k.append(alias);
    return k;
}

std::string be64(std::uint64_t v) {
    std::string out(8, '\0');
    for (int i = 7; i >= 0; --i, v >>= 8) out[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xff);
    return out;
}

std::uint64_t parse_u64(std::string_view s) {
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return 0;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return v;
}

void put_field(std::string& out, std::string_view f) {
    const std::size_t n = std::min<std::size_t>(f.size(), 0xffff);
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
    out.append(f.substr(0, n));
}

// Audit encoding v1: 0x01, be64 time, then who, command, old, new, batch as length-prefixed fields.
std::string encode_audit(const AuditEntry& e) {
    std::string out(1, '\x01');
    out += be64(static_cast<std::uint64_t>(e.time));
    for (const auto* f : {&e.who, &e.command, &e.old_value, &e.new_value, &e.batch}) put_field(out, *f);
    return out;
}

std::optional<AuditEntry> decode_audit(std::string_view address, std::string_view b) {
    if (b.size() < 9 || b[0] != '\x01') return std::nullopt;
    AuditEntry e;
    e.address = std::string(address);
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

std::string describe(const std::optional<UserRecord>& r) {
    if (!r) return {};
    std::string s(to_string(r->state));
    if (!r->target.empty()) s += " target=" + r->target;
    return s;
}

// LMDB creates files with our umask; the daemons run as another user in the directory's group
// and must be able to read data.mdb and write their reader slot in lock.mdb.
void fix_permissions(const std::string& dir) {
    struct stat d{};
    if (::stat(dir.c_str(), &d) != 0) return;
    for (const auto& [name, mode] : {std::pair{"/data.mdb", 0640}, std::pair{"/lock.mdb", 0660}}) {
        const std::string file = dir + name;
        struct stat f{};
        if (::stat(file.c_str(), &f) != 0) continue;
        if (f.st_gid != d.st_gid && ::chown(file.c_str(), static_cast<uid_t>(-1), d.st_gid) != 0) continue;
        if ((f.st_mode & 07777) != static_cast<mode_t>(mode)) ::chmod(file.c_str(), static_cast<mode_t>(mode));
    }
}

}  // namespace

struct MapStore::Handles {
    Environment env;
    MDB_dbi users{}, aliases{}, user_aliases{}, meta{}, audit{};

    Handles(const std::string& path, std::size_t map_size, Mode mode)
        : env(path, mode == Mode::read_only ? MDB_RDONLY : 0, map_size) {
        const bool create = mode == Mode::create;
        Transaction txn(env, mode == Mode::read_only ? Transaction::Mode::read : Transaction::Mode::write);
        meta = txn.open_db(schema::kMeta, create);
        const auto version = txn.get(meta, schema::kSchemaVersionKey);
        if (!version && create) {
            txn.put(meta, schema::kSchemaVersionKey, schema::kSchemaVersion);
        } else if (!version || *version != schema::kSchemaVersion) {
            throw MapUnavailable(path + ": schema version " + (version ? std::string(*version) : "missing") +
                                 " is not one this build reads (" + std::string(schema::kSchemaVersion) + ")");
        }
        users = txn.open_db(schema::kUsers, create);
        aliases = txn.open_db(schema::kAliases, create);
        user_aliases = txn.open_db(kUserAliases, create);
        audit = txn.open_db(schema::kAudit, create);
        txn.commit();
    }
};

class MapTxnImpl {
public:
    MapTxnImpl(MapStore::Handles& h, Transaction& txn, const ChangeContext* context)
        : h(h), txn(txn), context(context) {}

    void audit(std::string_view address, std::string old_value, std::string new_value, std::string batch) {
        if (!context) throw std::logic_error("change outside a write transaction");
        if (!sequence) {
            const auto s = txn.get(h.meta, schema::kAuditSequenceKey);
            sequence = s ? parse_u64(*s) : 0;
        }
        ++*sequence;
        AuditEntry e{context->time, std::string(address), context->who, context->command,
                     std::move(old_value), std::move(new_value), std::move(batch)};
        std::string key(address);
        key.push_back('\0');
        key += be64(*sequence);
        txn.put(h.audit, key, encode_audit(e));
        dirty_sequence = true;
    }

    void finish() {
        if (dirty_sequence) txn.put(h.meta, schema::kAuditSequenceKey, std::to_string(*sequence));
    }

    MapStore::Handles& h;
    Transaction& txn;
    const ChangeContext* context;
    std::optional<std::uint64_t> sequence;
    bool dirty_sequence = false;
};

std::optional<UserRecord> MapTxn::user(std::string_view key) {
    const auto v = impl_.txn.get(impl_.h.users, key);
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

void MapTxn::put_user(std::string_view key, UserRecord record) {
    const auto old = user(key);
    if (old && old->state == record.state && old->target == record.target && old->batch == record.batch)
        return;  // nothing changes: no write, no audit line
    record.changed = impl_.context ? impl_.context->time : 0;
    impl_.txn.put(impl_.h.users, key, encode(record));
    impl_.audit(key, describe(old), describe(record), record.batch);
}

bool MapTxn::remove_user(std::string_view key) {
    const auto old = user(key);
    if (!old) return false;
    for (const auto& a : aliases_of(key)) remove_alias(a);
    impl_.txn.del(impl_.h.users, key);
    impl_.audit(key, describe(old), "", old->batch);
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

void MapTxn::for_each_user(const std::function<bool(std::string_view, const UserRecord&)>& visit) {
    Cursor c(impl_.txn, impl_.h.users);
    std::string_view k, v;
    for (bool ok = c.seek("", k, v); ok; ok = c.next(k, v)) {
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
        if (auto e = decode_audit(address, v)) out.push_back(std::move(*e));
    }
    return out;
}

std::size_t MapTxn::user_count() { return impl_.txn.entries(impl_.h.users); }
std::size_t MapTxn::alias_count() { return impl_.txn.entries(impl_.h.aliases); }

MapStore::MapStore(const std::string& path, std::size_t map_size, Mode mode) : path_(path) {
    if (mode == Mode::create) {
        if (::mkdir(path.c_str(), 0750) != 0 && errno != EEXIST)
            throw MapUnavailable("cannot create map directory " + path + ": " + std::strerror(errno));
    }
    try {
        handles_ = std::make_unique<Handles>(path, map_size, mode);
    } catch (const MdbError& e) {
        if (e.code() == ENOENT)
            throw MapUnavailable("no map at " + path + " (run 'coexist-map init' first)");
        throw MapUnavailable(e.what());
    }
    if (mode != Mode::read_only) fix_permissions(path);
}

MapStore::~MapStore() = default;

void MapStore::write(const ChangeContext& context, const std::function<void(MapTxn&)>& change) {
    for (;;) {
        try {
            Transaction txn(handles_->env, Transaction::Mode::write);
            MapTxnImpl impl(*handles_, txn, &context);
            MapTxn t(impl);
            change(t);
            impl.finish();
            txn.commit();
            fix_permissions(path_);
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
        Transaction txn(handles_->env, Transaction::Mode::read);
        MapTxnImpl impl(*handles_, txn, nullptr);
        MapTxn t(impl);
        visit(t);
    } catch (const MdbError& e) {
        throw MapUnavailable(e.what());
    }
}

std::size_t MapStore::map_size() const { return handles_->env.map_size(); }

std::size_t MapStore::used_bytes() const {
    MDB_envinfo info{};
    MDB_stat st{};
    check_mdb(mdb_env_info(handles_->env.get(), &info), "mdb_env_info");
    check_mdb(mdb_env_stat(handles_->env.get(), &st), "mdb_env_stat");
    return (info.me_last_pgno + 1) * static_cast<std::size_t>(st.ms_psize);
}


}  // namespace coexist
