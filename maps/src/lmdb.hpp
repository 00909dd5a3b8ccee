// A thin RAII layer over LMDB in the spirit of lmdbxx: each handle owned by a small type whose
// destructor aborts or closes; errors become MdbError carrying the LMDB code.
#pragma once

#include <lmdb.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace coexist {

class MdbError : public std::runtime_error {
public:
    MdbError(const std::string& what, int code);
    int code() const { return code_; }

private:
    int code_;
};

// Throws MdbError when rc != 0.
void check_mdb(int rc, const char* what);

inline MDB_val to_val(std::string_view s) {
    return MDB_val{s.size(), const_cast<char*>(s.data())};
}
inline std::string_view to_view(const MDB_val& v) {
    return {static_cast<const char*>(v.mv_data), v.mv_size};
}

// users, aliases, user_aliases, meta, audit, schedule, hidden_aliases, and a writer's two scratch
// databases
inline constexpr unsigned kMaxNamedDatabases = 10;
// Reader slots in lock.mdb, fixed by whoever creates it (every coexist program asks the same): a
// daemon keeps one slot per thread that reads the map (map_reader.cpp caps that at a quarter of
// these per process), each coexist-map command takes one or two while it runs.
inline constexpr unsigned kMaxReaders = 1024;

// The value of `key` in `dbi`, nullopt when it is not there; the view points into the map and
// lives as long as the transaction. Throws MdbError.
std::optional<std::string_view> get(MDB_txn* txn, MDB_dbi dbi, std::string_view key);
// Number of entries in `dbi`. Throws MdbError.
std::size_t entries(MDB_txn* txn, MDB_dbi dbi);

class Environment {
public:
    // flags: MDB_RDONLY for the daemons. Always MDB_NOTLS: the milter runs one session's
    // callbacks on different worker threads. map_size in bytes, 0 = the size in the file.
    // Opens data.mdb and lock.mdb, repairs their group and modes (map_files.hpp) and checks the
    // data file is whole (check_data_file). Throws MdbError. At most one Environment per map
    // directory per process: closing one drops all the process's fcntl locks on lock.mdb.
    Environment(const std::string& path, unsigned flags, std::size_t map_size);
    ~Environment();
    Environment(const Environment&) = delete;
    Environment& operator=(const Environment&) = delete;

    MDB_env* get() const { return env_; }
    const std::string& path() const { return path_; }
    bool read_only() const { return read_only_; }
    std::size_t map_size() const;
    // Only with no transaction of this process open on this environment. 0 re-adopts the size
    // another process committed (after MDB_MAP_RESIZED), never smaller than the data.
    void set_map_size(std::size_t bytes);

    // Throws MdbError(MDB_CORRUPTED) naming data.mdb when the file is shorter than its newest
    // meta page says, or that meta page is not LMDB's: reading such a map through the mapping
    // would kill the process with SIGBUS. Reads the file with pread, never through the mapping.
    // Cost: one fstat and two small preads.
    void check_data_file() const;

    // True when path/data.mdb or path/lock.mdb is no longer the file this environment opened
    // (renamed over, or removed): a writer would commit to a file nobody opening the map reads,
    // or to ids and reader slots other programs no longer see; a reader would answer from a
    // stale or torn view. Two stat calls; never throws.
    bool files_replaced() const;

    // Whether lock.mdb still describes data.mdb, as the constructor checked at open, looked at
    // again by a process that keeps the map open (the daemons, once a second). A data.mdb copied
    // over in place (cp backup/data.mdb map/) keeps its inode, so files_replaced() does not see
    // it, and LMDB goes on reading it at the meta page of lock.mdb's parity: the copy's previous
    // commit half of the time (the empty map a restored import began as), with no error.
    // `one_ahead` carries the lock id of the last look that found the file exactly one commit
    // ahead of lock.mdb: a commit in flight looks so for an instant, a copied file at two looks
    // in a row. Throws MapFilesMismatch for a file behind lock.mdb's id, more than one commit
    // ahead, or one ahead at two looks with the same id. Begins and aborts one read transaction;
    // when none can begin, leaves the judgement to the next lookup, which meets the same error.
    void check_commit_ids(std::optional<std::size_t>& one_ahead) const;

    // The id of the newest commit in data.mdb itself (its newer meta page, read through the
    // mapping as mdb_txn_begin reads it; no syscall). Throws MdbError.
    std::size_t newest_commit() const;

    // At every snapshot a long-lived reader starts (`txn`, begun or renewed on this
    // environment; `file_before` = newest_commit() just before): throws MapFilesMismatch, as
    // Transaction does, when data.mdb's newest commit is older than the one lock.mdb gave the
    // snapshot, or was more than one ahead of it before the begin, which no whole map has (a
    // commit writes its meta page, then its id): a file copied over in place, from which LMDB
    // would read the commit of lock.mdb's parity until the next look. One ahead is a commit
    // in flight as well, left to check_commit_ids(). No syscall.
    void check_snapshot(MDB_txn* txn, std::size_t file_before) const;

    // Clears the reader slots of processes that died inside a read transaction (they pin old
    // pages, so the file only grows). Returns how many; never throws.
    int clear_stale_readers() noexcept;

private:
    // At open: the file's newest commit must be lock.mdb's id exactly. A data.mdb renamed in one
    // commit ahead of the id other programs keep in lock.mdb passes Transaction's bounds (a commit
    // in flight looks the same for an instant) and would be read at its previous commit, the
    // empty map of a restored copy. A commit in flight ends with its meta page's synchronous
    // write: looks again every 5 ms for 200 ms before refusing with MapFilesMismatch. A file
    // behind the id, or more than one commit ahead, is refused at once.
    void await_lock_matching_file();

    // The descriptor of data.mdb LMDB has open. Throws MdbError.
    int data_fd() const;
    // Throws MapFilesMismatch when LMDB opened this read-only environment without its lock
    // file (the map's directory on a file system this process sees read-only).
    void refuse_lock_free_reading() const;

    struct FileIdentity {
        dev_t device{};
        ino_t inode{};
        bool operator==(const FileIdentity&) const = default;
        static FileIdentity of(const struct stat& st) { return {st.st_dev, st.st_ino}; }
    };
    // The files this environment opened: data.mdb from its descriptor, lock.mdb by name just
    // after the open (LMDB keeps its descriptor to itself).
    static std::optional<FileIdentity> identity_of(const std::string& file);

    MDB_env* env_ = nullptr;
    std::string path_;
    bool read_only_;
    FileIdentity data_file_;
    std::optional<FileIdentity> lock_file_;
};

class Transaction {
public:
    enum class Mode { read, write };
    Transaction(Environment& env, Mode mode);
    ~Transaction();  // aborts unless committed
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;

    MDB_txn* get() const { return txn_; }
    void commit();

    // Opens a named database; `create` only in write transactions.
    MDB_dbi open_db(const char* name, bool create = false);
    std::optional<std::string_view> get(MDB_dbi dbi, std::string_view key);
    void put(MDB_dbi dbi, std::string_view key, std::string_view value, unsigned flags = 0);
    bool del(MDB_dbi dbi, std::string_view key);  // false if it was not there
    std::size_t entries(MDB_dbi dbi);

private:
    MDB_txn* txn_ = nullptr;
};

// A read-only transaction handle kept across many snapshots (design 13.3): started for one
// decision, reset after it, renewed for the next. A reset handle pins no snapshot (the writer
// may reuse every page it saw, and never waits for it) but keeps its reader slot, so renewing
// it takes no lock, allocates nothing and makes no syscall. The owner must close() it before
// its environment is closed or its map size changed.
class ReadHandle {
public:
    ReadHandle() = default;
    ~ReadHandle() { close(); }
    ReadHandle(const ReadHandle&) = delete;
    ReadHandle& operator=(const ReadHandle&) = delete;

    MDB_txn* get() const { return txn_; }
    // Starts a snapshot of the newest commit: renews the reset handle, or begins one. Returns
    // LMDB's code (0 = started) rather than throwing: the caller answers MDB_MAP_RESIZED by
    // adopting the new size once. A handle LMDB will not renew is replaced by a new one.
    int start(Environment& env) noexcept;
    // Ends the snapshot, keeping the handle and its reader slot for the next start().
    void reset() noexcept;
    // Aborts: frees the handle and gives its reader slot back.
    void close() noexcept;

private:
    MDB_txn* txn_ = nullptr;
};

class Cursor {
public:
    Cursor(Transaction& txn, MDB_dbi dbi);
    ~Cursor();
    Cursor(const Cursor&) = delete;
    Cursor& operator=(const Cursor&) = delete;

    // Positions at the first key >= `key` (or the first key at all when empty); false at end.
    bool seek(std::string_view key, std::string_view& k, std::string_view& v);
    bool next(std::string_view& k, std::string_view& v);
    void del_current();
    // The value of exactly `key`, or nothing; the cursor is left at or near it. Valid until the
    // next write in the transaction.
    std::optional<std::string_view> find(std::string_view key);
    // Writes key -> value (mdb_cursor_put). A key on the cursor's page, or past the last key of
    // the database while the cursor is on the last page, is placed without descending the tree
    // from its root: writes in key order through one cursor skip most of the search.
    void put(std::string_view key, std::string_view value);
    // Likewise, but only when `key` is not there: otherwise returns its value, writing nothing.
    std::optional<std::string_view> insert(std::string_view key, std::string_view value);

private:
    MDB_cursor* cursor_ = nullptr;
};

}  // namespace coexist
