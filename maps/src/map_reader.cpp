#include "coexist/map_reader.hpp"

#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "lmdb.hpp"
#include "schema.hpp"

namespace coexist {

namespace {

// How often a process looks at the map's files (design 13.3): a replaced or removed map, or a
// data.mdb cut short in place, is noticed within this long; at once after any LMDB error.
constexpr std::chrono::seconds kRecheckInterval{1};

// Threads of one process that keep a transaction handle (and so a reader slot in lock.mdb)
// between decisions. More threads than this still read, each beginning and aborting a
// transaction per decision, so that a milter with very many workers leaves slots for the
// other daemon and for coexist-map.
constexpr std::size_t kMaxKeptHandles = kMaxReaders / 4;

std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// An open LMDB environment on one data.mdb and one lock.mdb, and its database handles. A
// lock.mdb deleted (or replaced) under a running daemon leaves it on the old inode while
// coexist-map creates and uses a new one: the writer then no longer sees our reader slots (and
// may reuse pages we read) and we no longer see its commits' transaction ids, so lookups would
// answer from a stale or torn view. refresh() reopens when either file changes
// (Environment::files_replaced).
struct OpenMap {
    Environment env;
    MDB_dbi users{}, aliases{}, meta{};

    explicit OpenMap(const std::string& path) : env(path, MDB_RDONLY, 0) {
        // Named database handles opened in a read transaction become usable by later
        // transactions only once that transaction commits.
        Transaction txn(env, Transaction::Mode::read);
        meta = schema::open_meta(txn, path, false);
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

// One thread's way into one SharedMap. Its mutex is taken by that thread for one decision
// (uncontended: a futex word on a cache line of its own, no syscall) and by the map's refresher,
// which takes every slot's mutex before it closes, resizes or replaces the environment. So no
// lookup shares a lock's cache line with another thread, and the refresher still knows that
// no transaction of the process is open while it holds them all.
struct alignas(64) ReaderSlot {
    std::mutex mutex;
    ReadHandle handle;     // reset between decisions; guarded by mutex
    bool keep = true;      // false: one of more than kMaxKeptHandles threads, aborts after each decision
    bool discard = false;  // an LMDB error in this decision: abort the handle rather than reset it
    int depth = 0;         // views of the owning thread open on it; only that thread touches it
};

// The one environment a process keeps on a map directory, shared by every MapReader of that
// path and every thread. LMDB forbids opening the same environment twice in a process: closing
// the second drops all of the process's fcntl locks on lock.mdb, and the next coexist-map then
// believes it is alone and resets the reader table under live readers. So the environment is
// only ever closed, resized or replaced with every thread's slot held (Exclusive), when no
// lookup of this process has a transaction open and every kept handle has been aborted, and a
// replacement is opened only after the old one is closed (a data.mdb replaced by `mv` keeps
// the same lock.mdb inode). SharedMaps are made and destroyed under the registry's mutex, so
// two never exist for one path.
class SharedMap {
public:
    SharedMap(std::string path, std::uint64_t id) : path_(std::move(path)), id_(id) {}
    ~SharedMap() {
        // No MapReader is left, so no view: abort every handle before the environment closes.
        std::lock_guard guard(mutex_);
        for (auto& slot : slots_) slot->handle.close();
    }
    SharedMap(const SharedMap&) = delete;
    SharedMap& operator=(const SharedMap&) = delete;

    std::uint64_t id() const { return id_; }
    const std::string& path() const { return path_; }
    std::size_t readers = 0;  // MapReaders on it; guarded by the registry's mutex

    // Opens a view for the calling thread: its slot locked, its handle on a fresh snapshot.
    // Throws MapUnavailable.
    ReaderSlot& enter();
    // Ends the calling thread's view (the outermost one resets or aborts the handle).
    void leave(ReaderSlot& slot) noexcept;
    // The open map; only while the caller holds a slot's mutex (in a view).
    OpenMap& open_map() { return *map_; }

    // Gives back the slot of a thread that exits (called with the registry's mutex held).
    void release(ReaderSlot* slot) noexcept;

    // Bumps the generation first: a refresh that stat()ed before this call then cannot push the
    // next check a second away over it (it compares generations after storing its deadline).
    void recheck() noexcept {
        recheck_generation_.fetch_add(1);
        next_check_ns_ = 0;
    }

private:
    // Holds every slot's mutex while alive; the caller holds mutex_ (so the list stays put).
    // Lookups that see `exclusive_wanted_` wait on mutex_ instead of re-taking their slot
    // between two of the refresher's steps: the refresher is never starved.
    class Exclusive {
    public:
        explicit Exclusive(SharedMap& m) : m_(m) {
            m_.exclusive_wanted_.store(true);
            for (auto& slot : m_.slots_) slot->mutex.lock();
        }
        ~Exclusive() {
            for (auto& slot : m_.slots_) slot->mutex.unlock();
            m_.exclusive_wanted_.store(false);
        }
        Exclusive(const Exclusive&) = delete;
        Exclusive& operator=(const Exclusive&) = delete;

    private:
        SharedMap& m_;
    };

    ReaderSlot& slot_of_this_thread();
    void refresh();
    // The next look at the files a kRecheckInterval after `now` (ns, CLOCK_MONOTONIC), or at the
    // next lookup if recheck() was called since `generation` was read; with mutex_ held.
    void schedule_next_look(std::int64_t now, std::uint64_t generation) noexcept;
    void readopt_size();
    // With Exclusive held: aborts every kept handle, then closes the environment and says why.
    void close_map(std::string why) noexcept;
    void close_handles() noexcept {
        for (auto& slot : slots_) slot->handle.close();
    }

    const std::string path_;
    const std::uint64_t id_;  // unique in the process: a thread's cache tells a new map at a dead one's address
    // Guards slots_ and the refresher's work; map_ and unavailable_ change only with it and
    // Exclusive held, and are read with either it or one slot's mutex held.
    std::mutex mutex_;
    std::vector<std::unique_ptr<ReaderSlot>> slots_;  // guarded by mutex_
    std::size_t kept_ = 0;                            // slots with keep set; guarded by mutex_
    std::unique_ptr<OpenMap> map_;
    std::string unavailable_;  // why map_ is null
    // lock.mdb's id at the last look that found data.mdb one commit ahead of it (Environment::
    // check_commit_ids); guarded by mutex_.
    std::optional<std::size_t> one_commit_ahead_;
    std::atomic<std::int64_t> next_check_ns_{0};  // steady clock; 0 = at the next lookup
    std::atomic<std::uint64_t> recheck_generation_{0};  // recheck() calls so far
    std::atomic<bool> exclusive_wanted_{false};
};

namespace {

// The process's SharedMaps, by path. Never destroyed: threads that exit after static
// destruction began still give their slots back through it.
struct Registry {
    std::mutex mutex;
    std::map<std::string, SharedMap*> by_path;
    std::uint64_t next_id = 1;

    SharedMap* by_id(std::uint64_t id) {
        for (auto& [path, map] : by_path)
            if (map->id() == id) return map;
        return nullptr;
    }
};

Registry& registry() {
    static Registry* r = new Registry;
    return *r;
}

// The calling thread's slots, one per SharedMap it has read. Its destructor runs when the thread
// exits (libmilter's workers come and go) and gives the slots back, aborting their handles.
struct ThreadSlots {
    struct Entry {
        std::uint64_t map_id;
        ReaderSlot* slot;
    };
    std::vector<Entry> entries;
    Entry last{0, nullptr};  // the one used most recently: the lookup's fast path

    ~ThreadSlots() {
        Registry& r = registry();
        std::lock_guard guard(r.mutex);
        for (const Entry& e : entries)
            if (SharedMap* map = r.by_id(e.map_id)) map->release(e.slot);
    }
    // Forgets the slots of maps that are gone (their SharedMap freed them).
    void prune() {
        Registry& r = registry();
        std::lock_guard guard(r.mutex);
        std::erase_if(entries, [&](const Entry& e) { return r.by_id(e.map_id) == nullptr; });
        last = {0, nullptr};
    }
};

thread_local ThreadSlots t_slots;

}  // namespace

ReaderSlot& SharedMap::slot_of_this_thread() {
    ThreadSlots& mine = t_slots;
    if (mine.last.map_id == id_) return *mine.last.slot;
    for (const auto& e : mine.entries)
        if (e.map_id == id_) {
            mine.last = e;
            return *e.slot;
        }
    mine.prune();
    std::lock_guard guard(mutex_);
    auto& slot = slots_.emplace_back(std::make_unique<ReaderSlot>());
    slot->keep = kept_ < kMaxKeptHandles;
    if (slot->keep) ++kept_;
    mine.entries.push_back({id_, slot.get()});
    mine.last = mine.entries.back();
    return *slot;
}

void SharedMap::release(ReaderSlot* slot) noexcept {
    std::lock_guard guard(mutex_);
    {
        std::lock_guard own(slot->mutex);
        slot->handle.close();
    }
    if (slot->keep) --kept_;
    std::erase_if(slots_, [&](const auto& s) { return s.get() == slot; });
}

ReaderSlot& SharedMap::enter() {
    ReaderSlot& slot = slot_of_this_thread();
    if (slot.depth > 0) {  // this thread's view is open: share its snapshot
        ++slot.depth;
        return slot;
    }
    for (int attempt = 0;; ++attempt) {
        if (now_ns() >= next_check_ns_.load(std::memory_order_relaxed)) refresh();
        if (exclusive_wanted_.load(std::memory_order_relaxed)) {
            std::lock_guard wait(mutex_);  // until the refresher is done
        }
        std::unique_lock own(slot.mutex);
        if (!map_) throw MapUnavailable(unavailable_);
        std::size_t file_before = 0;  // 0 when unreadable: the begin meets the trouble itself
        try {
            file_before = map_->env.newest_commit();
        } catch (const std::exception&) {
        }
        const int rc = slot.handle.start(map_->env);
        if (rc == 0) {
            try {
                map_->env.check_snapshot(slot.handle.get(), file_before);
            } catch (const std::exception& e) {
                // A data.mdb copied over in place: refused now rather than at the next look,
                // which closes the map (check_commit_ids) and is asked for at once.
                slot.handle.close();
                own.unlock();
                next_check_ns_ = 0;
                throw MapUnavailable(e.what());
            }
            own.release();  // held until leave()
            slot.depth = 1;
            slot.discard = false;
            return slot;
        }
        const std::string error = MdbError("mdb_txn_begin", rc).what();
        own.unlock();
        // MDB_MAP_RESIZED: a writer grew the map beyond our mapping.
        if (rc == MDB_MAP_RESIZED && attempt == 0) {
            readopt_size();
            continue;
        }
        next_check_ns_ = 0;  // any LMDB error: look at the files again before the next lookup
        throw MapUnavailable(error);
    }
}

void SharedMap::leave(ReaderSlot& slot) noexcept {
    if (--slot.depth > 0) return;
    if (slot.keep && !slot.discard) slot.handle.reset();
    else slot.handle.close();
    slot.mutex.unlock();
}

// Looks at data.mdb: opens it, re-opens it when it or lock.mdb was replaced or removed
// (another inode, or none: the new environment makes a lock.mdb of its own), closes it
// when it is gone or damaged. Lookups go on meanwhile unless the environment must change.
// A data.mdb cut short in place is caught here, before the next lookup touches the missing
// pages, but only if this check runs first: a lookup within kRecheckInterval after the
// truncation can still meet SIGBUS. Checking the size at every lookup would cost a syscall
// each and still leave the window between check and read; a SIGBUS handler cannot safely
// unwind out of LMDB. Truncating a live map in place is not something coexist does (it writes
// only through LMDB). Replacing the directory by rename is safe; a data.mdb alone renamed in
// while another process holds lock.mdb is refused by every transaction (lmdb.cpp) until no
// process has the map open.
void SharedMap::schedule_next_look(std::int64_t now, std::uint64_t generation) noexcept {
    next_check_ns_ = now + std::chrono::duration_cast<std::chrono::nanoseconds>(kRecheckInterval).count();
    // A recheck() since we looked: what it asked for may be newer than what we saw.
    if (recheck_generation_.load() != generation) next_check_ns_ = 0;
}

void SharedMap::refresh() {
    std::lock_guard guard(mutex_);
    const std::int64_t now = now_ns();
    if (now < next_check_ns_.load()) return;  // another thread just did
    const std::uint64_t generation = recheck_generation_.load();  // before looking at the files
    try {
        if (map_ && !map_->env.files_replaced()) {
            map_->env.check_data_file();  // pread: safe beside running lookups
            map_->env.check_commit_ids(one_commit_ahead_);  // a data.mdb copied over in place
        } else {
            one_commit_ahead_.reset();
            struct stat st{};
            const std::string file = path_ + "/data.mdb";
            if (::stat(file.c_str(), &st) != 0)
                throw MapUnavailable("cannot open map " + path_ + ": " + std::strerror(errno));
            Exclusive all(*this);
            if (map_) close_map({});  // close first (data.mdb or lock.mdb replaced or removed)
            map_ = std::make_unique<OpenMap>(path_);
            unavailable_.clear();
        }
        map_->env.clear_stale_readers();
        schedule_next_look(now, generation);
    } catch (const MapFilesMismatch& e) {
        Exclusive all(*this);
        close_map(e.what());
        // Not at every lookup (MapFilesMismatch): lookups answer TEMP from the reason meanwhile.
        schedule_next_look(now, generation);
    } catch (const std::exception& e) {
        Exclusive all(*this);
        close_map(e.what());
        next_check_ns_ = 0;  // unavailable: look again at every lookup
    }
}

// Takes the size the writer committed, on the same environment (design 13.3).
void SharedMap::readopt_size() {
    std::lock_guard guard(mutex_);
    if (!map_) return;
    Exclusive all(*this);
    close_handles();  // mdb_env_set_mapsize: with no transaction of the process open
    try {
        map_->env.check_data_file();  // set_map_size reads the meta pages through the mapping
        map_->env.set_map_size(0);
    } catch (const std::exception& e) {
        close_map(e.what());
        next_check_ns_ = 0;
    }
}

void SharedMap::close_map(std::string why) noexcept {
    close_handles();
    map_.reset();
    unavailable_ = std::move(why);
}

namespace {

SharedMap* acquire_shared_map(const std::string& path) {
    Registry& r = registry();
    std::lock_guard guard(r.mutex);
    SharedMap*& map = r.by_path[path];
    if (!map) map = new SharedMap(path, r.next_id++);
    ++map->readers;
    return map;
}

// The last MapReader of a path closes the environment, under the registry's mutex: a MapReader
// made meanwhile for the same path waits, and opens its environment only after this one closed.
void release_shared_map(SharedMap* map) noexcept {
    Registry& r = registry();
    std::lock_guard guard(r.mutex);
    if (--map->readers > 0) return;
    r.by_path.erase(map->path());
    delete map;
}

}  // namespace

MapReader::MapReader(std::string path) : path_(std::move(path)), shared_(acquire_shared_map(path_)) {}
MapReader::~MapReader() { release_shared_map(shared_); }

MapView::MapView(MapReader& reader) : shared_(reader.shared_), slot_(&shared_->enter()) {}
MapView::~MapView() { shared_->leave(*slot_); }

namespace {

// Runs f(OpenMap&, MDB_txn*) on the view's snapshot; an LMDB error becomes MapUnavailable and
// has the map's files looked at again before the next lookup.
template <typename F>
auto in_view(SharedMap& shared, ReaderSlot& slot, F&& f) {
    try {
        return f(shared.open_map(), slot.handle.get());
    } catch (const MdbError& e) {
        slot.discard = true;
        shared.recheck();
        throw MapUnavailable(e.what());
    }
}

}  // namespace

UserLookup MapView::find(std::string_view key) {
    return in_view(*shared_, *slot_, [&](OpenMap& m, MDB_txn* txn) {
        UserLookup result;
        result.primary = std::string(key);
        auto value = get(txn, m.users, key);
        if (!value) {
            const auto alias = get(txn, m.aliases, key);
            if (alias) {
                const auto primary = schema::decode_alias(*alias);
                if (!primary) throw MapUnavailable("unreadable alias record for " + std::string(key));
                result.primary = std::string(*primary);
                result.via_alias = true;
                value = get(txn, m.users, *primary);
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

std::optional<std::size_t> MapView::domain_user_count(std::string_view domain) {
    return in_view(*shared_, *slot_, [&](OpenMap& m, MDB_txn* txn) -> std::optional<std::size_t> {
        if (!get(txn, m.meta, schema::kDomainCountsKey)) return std::nullopt;
        const auto n = get(txn, m.meta, schema::domain_users_key(domain));
        return n ? static_cast<std::size_t>(schema::parse_counter(*n)) : 0;
    });
}

std::optional<std::int64_t> MapView::directory_synced_at() {
    return in_view(*shared_, *slot_, [&](OpenMap& m, MDB_txn* txn) -> std::optional<std::int64_t> {
        const auto t = get(txn, m.meta, meta::kDirectorySyncedAt);
        if (!t) return std::nullopt;
        return static_cast<std::int64_t>(schema::parse_counter(*t));
    });
}

std::size_t MapView::user_count() {
    return in_view(*shared_, *slot_, [](OpenMap& m, MDB_txn* txn) { return entries(txn, m.users); });
}

UserLookup MapReader::find(std::string_view key) { return MapView(*this).find(key); }

std::optional<std::size_t> MapReader::domain_user_count(std::string_view domain) {
    return MapView(*this).domain_user_count(domain);
}

std::optional<std::int64_t> MapReader::directory_synced_at() { return MapView(*this).directory_synced_at(); }

void MapReader::recheck() noexcept { shared_->recheck(); }

std::size_t MapReader::user_count() { return MapView(*this).user_count(); }

}  // namespace coexist
