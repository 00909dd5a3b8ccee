#include "lmdb.hpp"

namespace coexist {

MdbError::MdbError(const std::string& what, int code)
    : std::runtime_error(what + ": " + mdb_strerror(code)), code_(code) {}

void check_mdb(int rc, const char* what) {
    if (rc != 0) throw MdbError(what, rc);
}

Environment::Environment(const std::string& path, unsigned flags, std::size_t map_size)
    : path_(path), read_only_((flags & MDB_RDONLY) != 0) {
    check_mdb(mdb_env_create(&env_), "mdb_env_create");
    try {
        check_mdb(mdb_env_set_maxdbs(env_, kMaxNamedDatabases), "mdb_env_set_maxdbs");
        check_mdb(mdb_env_set_maxreaders(env_, kMaxReaders), "mdb_env_set_maxreaders");
        if (map_size) check_mdb(mdb_env_set_mapsize(env_, map_size), "mdb_env_set_mapsize");
        // 0640 for data, lock file created the same; coexist-map fixes group modes afterwards.
        check_mdb(mdb_env_open(env_, path.c_str(), flags | MDB_NOTLS, 0640), ("open " + path).c_str());
    } catch (...) {
        mdb_env_close(env_);
        throw;
    }
}

Environment::~Environment() { mdb_env_close(env_); }

std::size_t Environment::map_size() const {
    MDB_envinfo info{};
    check_mdb(mdb_env_info(env_, &info), "mdb_env_info");
    return info.me_mapsize;
}

void Environment::set_map_size(std::size_t bytes) {
    check_mdb(mdb_env_set_mapsize(env_, bytes), "mdb_env_set_mapsize");
}

Transaction::Transaction(Environment& env, Mode mode) {
    check_mdb(mdb_txn_begin(env.get(), nullptr, mode == Mode::read ? MDB_RDONLY : 0, &txn_),
              "mdb_txn_begin");
}

Transaction::~Transaction() {
    if (txn_) mdb_txn_abort(txn_);
}

void Transaction::commit() {
    MDB_txn* t = txn_;
    txn_ = nullptr;  // mdb_txn_commit frees the handle even when it fails
    check_mdb(mdb_txn_commit(t), "mdb_txn_commit");
}

MDB_dbi Transaction::open_db(const char* name, bool create) {
    MDB_dbi dbi{};
    check_mdb(mdb_dbi_open(txn_, name, create ? MDB_CREATE : 0, &dbi), name);
    return dbi;
}

std::optional<std::string_view> Transaction::get(MDB_dbi dbi, std::string_view key) {
    MDB_val k = to_val(key), v{};
    const int rc = mdb_get(txn_, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    check_mdb(rc, "mdb_get");
    return to_view(v);
}

void Transaction::put(MDB_dbi dbi, std::string_view key, std::string_view value, unsigned flags) {
    MDB_val k = to_val(key), v = to_val(value);
    check_mdb(mdb_put(txn_, dbi, &k, &v, flags), "mdb_put");
}

bool Transaction::del(MDB_dbi dbi, std::string_view key) {
    MDB_val k = to_val(key);
    const int rc = mdb_del(txn_, dbi, &k, nullptr);
    if (rc == MDB_NOTFOUND) return false;
    check_mdb(rc, "mdb_del");
    return true;
}

std::size_t Transaction::entries(MDB_dbi dbi) {
    MDB_stat st{};
    check_mdb(mdb_stat(txn_, dbi, &st), "mdb_stat");
    return st.ms_entries;
}

Cursor::Cursor(Transaction& txn, MDB_dbi dbi) {
    check_mdb(mdb_cursor_open(txn.get(), dbi, &cursor_), "mdb_cursor_open");
}

Cursor::~Cursor() { mdb_cursor_close(cursor_); }

bool Cursor::seek(std::string_view key, std::string_view& k, std::string_view& v) {
    MDB_val mk = to_val(key), mv{};
    const int rc = key.empty() ? mdb_cursor_get(cursor_, &mk, &mv, MDB_FIRST)
                               : mdb_cursor_get(cursor_, &mk, &mv, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND) return false;
    check_mdb(rc, "mdb_cursor_get");
    k = to_view(mk);
    v = to_view(mv);
    return true;
}

bool Cursor::next(std::string_view& k, std::string_view& v) {
    MDB_val mk{}, mv{};
    const int rc = mdb_cursor_get(cursor_, &mk, &mv, MDB_NEXT);
    if (rc == MDB_NOTFOUND) return false;
    check_mdb(rc, "mdb_cursor_get");
    k = to_view(mk);
    v = to_view(mv);
    return true;
}

void Cursor::del_current() { check_mdb(mdb_cursor_del(cursor_, 0), "mdb_cursor_del"); }

}  // namespace coexist
