#include "lmdb.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <chrono>
#include <cstring>
#include <thread>
#include <fmt/format.h>

#include "coexist/map_reader.hpp"
#include "map_files.hpp"

namespace coexist {

namespace {

// LMDB 0.9's on-disk meta page (mdb.c: MDB_page header, then MDB_meta), for reading the file
// without touching the mapping. Stable since data format version 1; checked by magic and version.
constexpr std::uint32_t kMdbMagic = 0xBEEFC0DE;
constexpr std::uint32_t kMdbDataVersion = 1;
constexpr std::size_t kPageHeaderBytes = 16;  // pgno, pad, flags, lower/upper
constexpr std::size_t kInvalidPage = ~std::size_t{0};

struct MdbDb {  // MDB_db
    std::uint32_t pad;  // in the free-page database: the page size
    std::uint16_t flags, depth;
    std::size_t branch_pages, leaf_pages, overflow_pages, entries, root;
};
struct MdbMeta {  // MDB_meta
    std::uint32_t magic, version;
    void* address;
    std::size_t map_size;
    MdbDb dbs[2];  // free pages, main
    std::size_t last_page;
    std::size_t txnid;
};
static_assert(sizeof(MdbDb) == 48 && sizeof(MdbMeta) == 136, "LMDB 0.9 meta layout (LP64)");

// Reads the meta page at `offset`; empty string on success, else why not.
std::string read_meta(int fd, off_t offset, MdbMeta& meta) {
    unsigned char buf[kPageHeaderBytes + sizeof(MdbMeta)];
    const ssize_t n = ::pread(fd, buf, sizeof buf, offset);
    if (n < 0) return std::strerror(errno);
    if (static_cast<std::size_t>(n) != sizeof buf) return "meta page cut short";
    std::memcpy(&meta, buf + kPageHeaderBytes, sizeof meta);
    if (meta.magic != kMdbMagic || meta.version != kMdbDataVersion) return "not an LMDB meta page";
    return {};
}

std::string data_file_problem(int fd) {
    MdbMeta metas[2]{};
    if (auto why = read_meta(fd, 0, metas[0]); !why.empty()) return why;
    const std::size_t page = metas[0].dbs[0].pad;
    if (page < 512 || page > 65536 || (page & (page - 1)) != 0) return "implausible page size";
    if (auto why = read_meta(fd, static_cast<off_t>(page), metas[1]); !why.empty()) return why;
    // The meta LMDB's next transaction uses (mdb_env_pick_meta).
    const MdbMeta& m = metas[metas[0].txnid < metas[1].txnid ? 1 : 0];
    if (m.last_page < 1) return "implausible last page";
    for (const MdbDb& db : m.dbs)
        if (db.root != kInvalidPage && (db.root < 2 || db.root > m.last_page))
            return "a root page lies beyond the last page";
    // fstat after reading the meta: data pages are written before the meta that refers to
    // them, and the file never shrinks in normal use, so a whole file passes even while another
    // process commits.
    struct stat st{};
    if (::fstat(fd, &st) != 0) return std::strerror(errno);
    const auto needed = static_cast<unsigned long long>(m.last_page + 1) * page;
    if (static_cast<unsigned long long>(st.st_size) < needed)
        return "truncated: " + std::to_string(st.st_size) + " bytes, the map needs " + std::to_string(needed);
    return {};
}

// After mdb_env_open() failed with EACCES, which says nothing of which file: the first of the
// map's files this process may not open as LMDB opens them (lock.mdb read-write, as readers
// take a slot in it; data.mdb read-only or read-write), else the directory (where LMDB would
// create a missing file). Probing opens nothing new: no O_CREAT.
std::string denied_map_file(const std::string& dir, bool read_only) {
    const std::pair<const char*, int> files[] = {{"/lock.mdb", O_RDWR}, {"/data.mdb", read_only ? O_RDONLY : O_RDWR}};
    for (const auto& [name, mode] : files) {
        const std::string file = dir + name;
        const int fd = ::open(file.c_str(), mode | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd >= 0) {
            ::close(fd);
            continue;
        }
        if (errno == EACCES) return file;
    }
    return dir;
}

}  // namespace

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
        {
            // As the directory's owner where root would otherwise open files that owner can
            // replace (map_files.hpp); the two files must be regular, not links to elsewhere.
            const MapOwnerIdentity as_owner(path);
            refuse_irregular_map_files(path);
            // 0640 for data, lock file created the same; coexist-map fixes group modes afterwards.
            const int rc = mdb_env_open(env_, path.c_str(), flags | MDB_NOTLS, 0640);
            // LMDB's own codes are about the data file; errno codes may be about lock.mdb too.
            const bool data_file_bad = rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED;
            std::string what = "open " + (rc == EACCES ? denied_map_file(path, read_only_)
                                                       : path + (data_file_bad ? "/data.mdb" : ""));
            // LMDB opens a data.mdb of 0 bytes read-only as a new map it may not create, and
            // says only "Bad file descriptor": say what the file is.
            struct stat data{};
            if (rc == EBADF && read_only_ && ::stat((path + "/data.mdb").c_str(), &data) == 0 && data.st_size == 0)
                throw MapUnavailable(path + "/data.mdb is empty (0 bytes): no map there (coexist-map init "
                                            "starts one, coexist-map restore loads a dump)");
            if (rc == EACCES && as_owner.acting_as())
                what += " (as its directory's owner, uid " + std::to_string(*as_owner.acting_as()) +
                        ", as root always does there: the map's files must be that owner's)";
            check_mdb(rc, what.c_str());
            repair_map_files(path);
        }
        refuse_lock_free_reading();
        struct stat data{};
        if (::fstat(data_fd(), &data) != 0) throw MdbError("fstat " + path + "/data.mdb", errno);
        data_file_ = FileIdentity::of(data);
        lock_file_ = identity_of(path + "/lock.mdb");
        check_data_file();
        await_lock_matching_file();
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

void Environment::refuse_lock_free_reading() const {
    if (!read_only_) return;
    // LMDB opens a read-only environment without its lock file when lock.mdb is on a read-only
    // file system (mdb_env_setup_locks: "Omit lockfile if read-only env on read-only
    // filesystem"), and says nothing: no flag, no error. Such a reader holds no reader slot, so
    // a writer elsewhere may reuse the pages of the snapshot it is reading: a torn answer. It
    // happens to a daemon under systemd's ProtectSystem=strict when the map's directory (its
    // ReadWritePaths) was moved aside and another renamed in after it started: its writable
    // mount stays with the old directory, and the new one is read-only to it.
    struct statvfs fs{};
    if (::statvfs(path_.c_str(), &fs) == 0 && (fs.f_flag & ST_RDONLY))
        throw MapFilesMismatch(path_ + " is on a file system this process sees read-only, so lock.mdb cannot be "
                               "used and reading could give torn answers (under the shipped systemd units: a map "
                               "directory renamed into place after the daemon started is outside its writable "
                               "paths): restart the daemon; 'coexist-map restore --replace' changes a live map "
                               "without that");
}

int Environment::data_fd() const {
    int fd = -1;
    check_mdb(mdb_env_get_fd(env_, &fd), "mdb_env_get_fd");
    return fd;
}

std::optional<Environment::FileIdentity> Environment::identity_of(const std::string& file) {
    struct stat st{};
    if (::stat(file.c_str(), &st) != 0) return std::nullopt;
    return FileIdentity::of(st);
}

bool Environment::files_replaced() const {
    return identity_of(path_ + "/data.mdb") != data_file_ || identity_of(path_ + "/lock.mdb") != lock_file_;
}

void Environment::check_data_file() const {
    const int fd = data_fd();
    // A torn read of a meta page being rewritten by a committing writer looks wrong once;
    // a damaged file looks wrong every time.
    std::string why = data_file_problem(fd);
    if (!why.empty()) why = data_file_problem(fd);
    if (!why.empty()) throw MdbError(path_ + "/data.mdb: " + why, MDB_CORRUPTED);
}

int Environment::clear_stale_readers() noexcept {
    int dead = 0;
    return mdb_reader_check(env_, &dead) == 0 ? dead : 0;
}

namespace {

// The id of the newest commit in data.mdb itself: its newer meta page, read through the mapping
// (mdb_env_info picks it as mdb_env_pick_meta does). No syscall.
std::size_t newest_commit_in_file(MDB_env* env) {
    MDB_envinfo info{};
    check_mdb(mdb_env_info(env, &info), "mdb_env_info");
    return info.me_last_txnid;
}

// Whether a read snapshot that lock.mdb gave the id `lock_id` cannot be of this data.mdb, whose
// newest commit was `file_before` just before the begin and `file_after` just after: in a whole
// map the file is never behind lock.mdb (a commit writes its meta page, then its id) and at most
// one commit ahead of the id read after it (a commit in flight).
bool foreign_to_snapshot(std::size_t file_before, std::size_t lock_id, std::size_t file_after) {
    return file_after < lock_id || file_before > lock_id + 1;
}

// What a data.mdb that lock.mdb does not describe is refused with (Transaction, Environment).
[[noreturn]] void throw_replaced(const std::string& path, std::size_t file_id, std::size_t lock_id) {
    throw MapFilesMismatch(fmt::format(
        "{}/data.mdb was replaced while another program kept the map open (its last commit is {}, "
        "lock.mdb says {}): nothing is read from it or written to it until no program has the map "
        "open (the daemons and 'coexist-map sync --follow' let go of it within a second; stop any other "
        "coexist-map). To replace a map, move its directory aside and rename a whole copy into its place",
        path, file_id, lock_id));
}

}  // namespace

void Environment::check_commit_ids(std::optional<std::size_t>& one_ahead) const {
    const std::size_t file_before = newest_commit_in_file(env_);
    MDB_txn* txn = nullptr;
    if (mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn) != 0) return;
    const std::size_t lock_id = mdb_txn_id(txn);
    mdb_txn_abort(txn);
    const std::size_t file_after = newest_commit_in_file(env_);
    if (foreign_to_snapshot(file_before, lock_id, file_after)) throw_replaced(path_, file_after, lock_id);
    if (file_after != lock_id + 1) {
        one_ahead.reset();
        return;
    }
    // A commit's meta page is written, then its id stored in lock.mdb: one ahead at the last
    // look too, with no commit between, is no commit in flight.
    if (one_ahead == lock_id) throw_replaced(path_, file_after, lock_id);
    one_ahead = lock_id;
}

std::size_t Environment::newest_commit() const { return newest_commit_in_file(env_); }

void Environment::check_snapshot(MDB_txn* txn, std::size_t file_before) const {
    const std::size_t lock_id = mdb_txn_id(txn);
    const std::size_t file_after = newest_commit_in_file(env_);
    if (foreign_to_snapshot(file_before, lock_id, file_after)) throw_replaced(path_, file_after, lock_id);
}

void Environment::await_lock_matching_file() {
    constexpr int kAttempts = 40;
    for (int attempt = 1;; ++attempt) {
        MDB_txn* txn = nullptr;
        int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
        // Another process grew the map past the size this one read: adopt it (no transaction of
        // this environment is open yet) and begin again, as every later begin does.
        if (rc == MDB_MAP_RESIZED) {
            check_mdb(mdb_env_set_mapsize(env_, 0), "mdb_env_set_mapsize");
            rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
        }
        check_mdb(rc, "mdb_txn_begin");
        const std::size_t lock_id = mdb_txn_id(txn);
        mdb_txn_abort(txn);
        const std::size_t file_id = newest_commit_in_file(env_);
        if (file_id == lock_id) return;
        // Only a file exactly one commit ahead can be a commit in flight; any other difference
        // is another map, refused at once rather than after holding lock.mdb for the wait.
        if (file_id != lock_id + 1 || attempt == kAttempts) throw_replaced(path_, file_id, lock_id);
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
}

Transaction::Transaction(Environment& env, Mode mode) {
    const unsigned flags = mode == Mode::read ? MDB_RDONLY : 0;
    const std::size_t file_before = newest_commit_in_file(env.get());
    int rc = mdb_txn_begin(env.get(), nullptr, flags, &txn_);
    // Every slot taken: some may belong to readers that died; reclaim them and try once more.
    if (rc == MDB_READERS_FULL && env.clear_stale_readers() > 0) rc = mdb_txn_begin(env.get(), nullptr, flags, &txn_);
    check_mdb(rc, "mdb_txn_begin");
    // LMDB starts a transaction from the meta page whose parity is that of the last commit id
    // lock.mdb holds (mdb_txn_renew0: me_metas[mti_txnid & 1]), not from the newer of the file's
    // two. A data.mdb renamed into place while another process kept lock.mdb open meets the
    // old map's id: the transaction would start from the new file's previous commit (the empty
    // map a restored copy began as) half of the time, and a write would store that older state
    // for good. In a whole map the file is never behind lock.mdb (a commit writes its meta page
    // first, then the id) and at most one commit ahead of the id read after it; a file outside
    // those bounds is not the one lock.mdb describes. Only the first process to open the map
    // again, once none has it open, takes its ids from the file (mdb_env_share_locks).
    const std::size_t lock_id = mdb_txn_id(txn_) - (mode == Mode::write ? 1 : 0);
    const std::size_t file_after = newest_commit_in_file(env.get());
    // A write transaction holds the write lock: the writer before it either finished (it stored
    // its id in lock.mdb before letting go) or died (LMDB's recovery of the robust mutex took the
    // id from the file, mdb_mutex_failed), so here the file's newest commit is lock.mdb's id
    // exactly. One commit ahead is a copy renamed in (or a lock.mdb other writers no longer use).
    const bool foreign = mode == Mode::write ? file_after != lock_id
                                             : foreign_to_snapshot(file_before, lock_id, file_after);
    if (foreign) {
        mdb_txn_abort(txn_);
        txn_ = nullptr;
        throw_replaced(env.path(), file_after, lock_id);
    }
}

Transaction::~Transaction() {
    if (txn_) mdb_txn_abort(txn_);
}

void Transaction::commit() {
    MDB_txn* t = txn_;
    txn_ = nullptr;  // mdb_txn_commit frees the handle even when it fails
    // The file, for the message: taken before the commit, which frees the handle.
    const char* env_path = nullptr;
    const std::string data_file =
        mdb_env_get_path(mdb_txn_env(t), &env_path) == 0 && env_path ? std::string(env_path) + "/data.mdb" : "data.mdb";
    const int rc = mdb_txn_commit(t);
    // A write that failed part way (LMDB reports a short write as EIO; a file system or quota
    // limit met at the first byte is ENOSPC, EDQUOT or EFBIG): the meta page that would have
    // made the transaction visible is written last, so the map is as it was. Say so, which
    // file, and what usually causes it.
    if (rc == EIO || rc == ENOSPC || rc == EDQUOT || rc == EFBIG)
        throw MdbError("mdb_txn_commit: writing " + data_file +
                       " failed (nothing of this change was stored, the map is as it was; is the disk full?)", rc);
    check_mdb(rc, "mdb_txn_commit");
}

MDB_dbi Transaction::open_db(const char* name, bool create) {
    MDB_dbi dbi{};
    check_mdb(mdb_dbi_open(txn_, name, create ? MDB_CREATE : 0, &dbi), name);
    return dbi;
}

std::optional<std::string_view> get(MDB_txn* txn, MDB_dbi dbi, std::string_view key) {
    MDB_val k = to_val(key), v{};
    const int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    check_mdb(rc, "mdb_get");
    return to_view(v);
}

std::optional<std::string_view> Transaction::get(MDB_dbi dbi, std::string_view key) { return coexist::get(txn_, dbi, key); }

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

std::size_t entries(MDB_txn* txn, MDB_dbi dbi) {
    MDB_stat st{};
    check_mdb(mdb_stat(txn, dbi, &st), "mdb_stat");
    return st.ms_entries;
}

std::size_t Transaction::entries(MDB_dbi dbi) { return coexist::entries(txn_, dbi); }

int ReadHandle::start(Environment& env) noexcept {
    if (txn_) {
        // A reset handle under MDB_NOTLS owns its reader slot: mdb_txn_renew only publishes the
        // newest transaction id in it. MDB_MAP_RESIZED leaves the handle reset, to be closed
        // before the resize; any other failure (MDB_BAD_RSLOT) gets a fresh handle.
        const int rc = mdb_txn_renew(txn_);
        if (rc == 0 || rc == MDB_MAP_RESIZED) return rc;
        close();
    }
    int rc = mdb_txn_begin(env.get(), nullptr, MDB_RDONLY, &txn_);
    // Every slot taken: some may belong to readers that died; reclaim them and try once more.
    if (rc == MDB_READERS_FULL && env.clear_stale_readers() > 0) rc = mdb_txn_begin(env.get(), nullptr, MDB_RDONLY, &txn_);
    if (rc != 0) txn_ = nullptr;
    return rc;
}

void ReadHandle::reset() noexcept {
    if (txn_) mdb_txn_reset(txn_);
}

void ReadHandle::close() noexcept {
    if (txn_) mdb_txn_abort(txn_);
    txn_ = nullptr;
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

std::optional<std::string_view> Cursor::find(std::string_view key) {
    MDB_val mk = to_val(key), mv{};
    const int rc = mdb_cursor_get(cursor_, &mk, &mv, MDB_SET_KEY);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    check_mdb(rc, "mdb_cursor_get");
    return to_view(mv);
}

void Cursor::put(std::string_view key, std::string_view value) {
    MDB_val mk = to_val(key), mv = to_val(value);
    check_mdb(mdb_cursor_put(cursor_, &mk, &mv, 0), "mdb_cursor_put");
}

std::optional<std::string_view> Cursor::insert(std::string_view key, std::string_view value) {
    MDB_val mk = to_val(key), mv = to_val(value);
    const int rc = mdb_cursor_put(cursor_, &mk, &mv, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) return to_view(mv);  // LMDB returns the value that is there
    check_mdb(rc, "mdb_cursor_put");
    return std::nullopt;
}

}  // namespace coexist
