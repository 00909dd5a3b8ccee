#include "coexist/map_reader.hpp"

#include <pthread.h>
#include <sys/stat.h>

#include <optional>
#include <utility>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <shared_mutex>

#include "lmdb.hpp"
#include "schema.hpp"

namespace coexist {

namespace {

// How often a process looks at the map's files (design 13.3): a replaced or removed map, or a
// data.mdb cut short in place, is noticed within this long; at once after any LMDB error.
constexpr std::chrono::seconds kRecheckInterval{1};

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// A reader/writer lock that lets a waiting writer in: lookups of many threads overlap
// endlessly, and glibc's default (reader preference) could starve the re-open or the resize
// for as long as the load lasts. The shared side is a futex operation, no syscall uncontended.
class RwLock {
public:
    RwLock() {
        pthread_rwlockattr_t attr;
        pthread_rwlockattr_init(&attr);
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&lock_, &attr);
        pthread_rwlockattr_destroy(&attr);
    }
    ~RwLock() { pthread_rwlock_destroy(&lock_); }
    RwLock(const RwLock&) = delete;
    RwLock& operator=(const RwLock&) = delete;
    void lock_shared() { pthread_rwlock_rdlock(&lock_); }
    void lock() { pthread_rwlock_wrlock(&lock_); }
    void unlock() { pthread_rwlock_unlock(&lock_); }
    void unlock_shared() { pthread_rwlock_unlock(&lock_); }

private:
    pthread_rwlock_t lock_;
};

// The device and inode of lock.mdb as it is now; nullopt when it is not there.
std::optional<std::pair<dev_t, ino_t>> lock_file_identity(const std::string& dir) {
    struct stat st{};
    if (::stat((dir + "/lock.mdb").c_str(), &st) != 0) return std::nullopt;
    return std::pair{st.st_dev, st.st_ino};
}

// An open LMDB environment on one data.mdb and one lock.mdb (device and inode of each) and its
// database handles.
struct OpenMap {
    Environment env;
    MDB_dbi users{}, aliases{}, meta{};
    dev_t device{};
    ino_t inode{};
    // The lock file this environment has open. A lock.mdb deleted (or replaced) under a running
    // daemon leaves it on the old inode while coexist-map creates and uses a new one: the
    // writer then no longer sees our reader slots (and may reuse pages we read) and we no
    // longer see its commits' transaction ids, so lookups answer from a stale or torn view.
    std::optional<std::pair<dev_t, ino_t>> lock_file;

    OpenMap(const std::string& path, const struct stat& data_file)
        : env(path, MDB_RDONLY, 0), device(data_file.st_dev), inode(data_file.st_ino),
          lock_file(lock_file_identity(path)) {
        // Named database handles opened in a read transaction become usable by later
        // transactions only once that transaction commits.
        Transaction txn(env, Transaction::Mode::read);
        meta = txn.open_db(schema::kMeta);
        const auto version = txn.get(meta, schema::kSchemaVersionKey);
        // A newer schema than this build knows: every lookup is a temporary failure that says
        // why (design 13.2), never a guess from records it may misread.
        if (!version || !schema::readable_schema(*version))
            throw MapUnavailable(path + ": schema version " +
                                 (version ? std::string(*version) : std::string("missing")) +
                                 " is not one this build reads (" + std::string(schema::kSchemaVersion) + ")");
        users = txn.open_db(schema::kUsers);
        aliases = txn.open_db(schema::kAliases);
        txn.commit();
    }
};

}  // namespace

// The one environment a process keeps on a map directory, shared by every MapReader of that
// path and every thread. LMDB forbids opening the same environment twice in a process: closing
// the second drops all of the process's fcntl locks on lock.mdb, and the next coexist-map then
// believes it is alone and resets the reader table under live readers. So the environment is
// only ever closed, resized or replaced under the exclusive side of `lock_`, when no lookup of
// this process has a transaction open, and a replacement is opened only after the old one is
// closed (a data.mdb replaced by `mv` keeps the same lock.mdb inode).
class SharedMap {
public:
    explicit SharedMap(std::string path) : path_(std::move(path)) {}

    // Runs f(OpenMap&, Transaction&) in a read transaction. Throws MapUnavailable.
    template <typename F>
    auto with_read_txn(F&& f) {
        for (int attempt = 0;; ++attempt) {
            if (now_ns() >= next_check_ns_.load(std::memory_order_relaxed)) refresh();
            int code = 0;
            std::string error;
            {
                std::shared_lock<RwLock> lookup(lock_);
                if (!map_) throw MapUnavailable(unavailable_);
                try {
                    Transaction txn(map_->env, Transaction::Mode::read);
                    return f(*map_, txn);
                } catch (const MdbError& e) {
                    code = e.code();
                    error = e.what();
                }
            }
            // MDB_MAP_RESIZED: a writer grew the map beyond our mapping.
            if (code == MDB_MAP_RESIZED && attempt == 0) {
                readopt_size();
                continue;
            }
            next_check_ns_ = 0;  // any LMDB error: look at the files again before the next lookup
            throw MapUnavailable(error);
        }
    }

    void recheck() noexcept { next_check_ns_ = 0; }

private:
    // Looks at data.mdb: opens it, re-opens it when it or lock.mdb was replaced or removed
    // (another inode, or none: the new environment makes a lock.mdb of its own), closes it
    // when it is gone or damaged. A data.mdb cut short in place is caught here, before the next
    // lookup touches the missing pages, but only if this check runs first: a lookup within
    // kRecheckInterval after the truncation can still meet SIGBUS. Checking the size at every
    // lookup would cost a syscall each and still leave the window between check and read; a
    // SIGBUS handler cannot safely unwind out of LMDB. Truncating a live map in place is not
    // something coexist does (it writes only through LMDB); replacing it by rename is safe.
    void refresh() {
        std::unique_lock<RwLock> exclusive(lock_);
        const std::int64_t now = now_ns();
        if (now < next_check_ns_.load()) return;  // another thread just did
        try {
            struct stat st{};
            const std::string file = path_ + "/data.mdb";
            if (::stat(file.c_str(), &st) != 0) throw MapUnavailable("cannot open map " + path_ + ": " + std::strerror(errno));
            if (map_ && (map_->device != st.st_dev || map_->inode != st.st_ino ||
                         map_->lock_file != lock_file_identity(path_)))
                map_.reset();  // close first (data.mdb or lock.mdb replaced or removed)
            if (map_) map_->env.check_data_file();
            else map_ = std::make_unique<OpenMap>(path_, st);
            map_->env.clear_stale_readers();
            unavailable_.clear();
            next_check_ns_ = now + std::chrono::duration_cast<std::chrono::nanoseconds>(kRecheckInterval).count();
        } catch (const std::exception& e) {
            map_.reset();
            unavailable_ = e.what();
            next_check_ns_ = 0;  // unavailable: look again at every lookup
        }
    }

    // Takes the size the writer committed, on the same environment (design 13.3).
    void readopt_size() {
        std::unique_lock<RwLock> exclusive(lock_);
        if (!map_) return;
        try {
            map_->env.check_data_file();  // set_map_size reads the meta pages through the mapping
            map_->env.set_map_size(0);
        } catch (const std::exception& e) {
            map_.reset();
            unavailable_ = e.what();
            next_check_ns_ = 0;
        }
    }

    const std::string path_;
    RwLock lock_;  // shared: one lookup's transaction; exclusive: open, close, resize
    std::unique_ptr<OpenMap> map_;            // guarded by lock_
    std::string unavailable_;                 // why map_ is null; guarded by lock_
    std::atomic<std::int64_t> next_check_ns_{0};  // steady clock; 0 = at the next lookup
};

namespace {

// One SharedMap per map path in the process, alive while any MapReader uses it.
std::shared_ptr<SharedMap> shared_map_for(const std::string& path) {
    static std::mutex registry_mutex;
    static std::map<std::string, std::weak_ptr<SharedMap>> registry;
    std::lock_guard guard(registry_mutex);
    auto& slot = registry[path];
    auto shared = slot.lock();
    if (!shared) {
        shared = std::make_shared<SharedMap>(path);
        slot = shared;
    }
    return shared;
}

}  // namespace

MapReader::MapReader(std::string path) : path_(std::move(path)), shared_(shared_map_for(path_)) {}
MapReader::~MapReader() = default;

UserLookup MapReader::find(std::string_view key) {
    return shared_->with_read_txn([&](OpenMap& m, Transaction& txn) {
        UserLookup result;
        result.primary = std::string(key);
        auto value = txn.get(m.users, key);
        if (!value) {
            const auto alias = txn.get(m.aliases, key);
            if (alias) {
                const auto primary = schema::decode_alias(*alias);
                if (!primary) throw MapUnavailable("unreadable alias record for " + std::string(key));
                result.primary = std::string(*primary);
                result.via_alias = true;
                value = txn.get(m.users, *primary);
            }
        }
        // Unknown (a dangling alias too: coexist-map removes a user's aliases with it).
        if (!value) return result;
        result.record = decode_user(*value);
        if (!result.record)
            throw MapUnavailable("unreadable user record for " + result.primary +
                                 " (written by a newer coexist?)");
        return result;
    });
}

std::optional<std::size_t> MapReader::domain_user_count(std::string_view domain) {
    return shared_->with_read_txn([&](OpenMap& m, Transaction& txn) -> std::optional<std::size_t> {
        if (!txn.get(m.meta, schema::kDomainCountsKey)) return std::nullopt;
        const auto n = txn.get(m.meta, schema::domain_users_key(domain));
        return n ? static_cast<std::size_t>(schema::parse_counter(*n)) : 0;
    });
}

std::optional<std::int64_t> MapReader::directory_synced_at() {
    return shared_->with_read_txn([&](OpenMap& m, Transaction& txn) -> std::optional<std::int64_t> {
        const auto t = txn.get(m.meta, meta::kDirectorySyncedAt);
        if (!t) return std::nullopt;
        return static_cast<std::int64_t>(schema::parse_counter(*t));
    });
}

void MapReader::recheck() noexcept { shared_->recheck(); }

std::size_t MapReader::user_count() {
    return shared_->with_read_txn([](OpenMap& m, Transaction& txn) { return txn.entries(m.users); });
}

}  // namespace coexist
