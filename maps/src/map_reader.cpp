#include "coexist/map_reader.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "lmdb.hpp"
#include "schema.hpp"

namespace coexist {

struct OpenMap {
    Environment env;
    MDB_dbi users{}, aliases{};
    dev_t device{};
    ino_t inode{};

    OpenMap(const std::string& path, const struct stat& data_file)
        : env(path, MDB_RDONLY, 0), device(data_file.st_dev), inode(data_file.st_ino) {
        // Named database handles opened in a read transaction become usable by later
        // transactions only once that transaction commits.
        Transaction txn(env, Transaction::Mode::read);
        const MDB_dbi meta = txn.open_db(schema::kMeta);
        const auto version = txn.get(meta, schema::kSchemaVersionKey);
        if (!version || *version != schema::kSchemaVersion)
            throw MapUnavailable(path + ": schema version " +
                                 (version ? std::string(*version) : std::string("missing")) +
                                 " is not one this build reads (" + std::string(schema::kSchemaVersion) + ")");
        users = txn.open_db(schema::kUsers);
        aliases = txn.open_db(schema::kAliases);
        txn.commit();
    }
};

MapReader::MapReader(std::string path) : path_(std::move(path)) {}
MapReader::~MapReader() = default;

namespace {

struct stat stat_data_file(const std::string& dir) {
    struct stat st{};
    const std::string file = dir + "/data.mdb";
    if (::stat(file.c_str(), &st) != 0)
        throw MapUnavailable("cannot open map " + dir + ": " + std::strerror(errno));
    return st;
}

}  // namespace

std::shared_ptr<OpenMap> MapReader::current() {
    // One stat per decision keeps us honest about a map that was removed or replaced; it is
    // cheap next to the SMTP round trip that asked.
    const struct stat st = stat_data_file(path_);
    std::lock_guard lock(mutex_);
    if (map_ && map_->device == st.st_dev && map_->inode == st.st_ino) return map_;
    map_.reset();
    try {
        map_ = std::make_shared<OpenMap>(path_, st);
    } catch (const MdbError& e) {
        throw MapUnavailable(e.what());
    }
    return map_;
}

void MapReader::invalidate(const std::shared_ptr<OpenMap>& stale) {
    std::lock_guard lock(mutex_);
    if (map_ == stale) map_.reset();
}

template <typename F>
auto MapReader::with_read_txn(F&& f) {
    // MDB_MAP_RESIZED: coexist-map grew the map beyond what our mapping covers. Transactions
    // of other threads may still run on the old mapping, so instead of resizing under them we
    // open a fresh environment and let the old one go when its last user is done.
    for (int attempt = 0;; ++attempt) {
        auto map = current();
        try {
            Transaction txn(map->env, Transaction::Mode::read);
            return f(*map, txn);
        } catch (const MdbError& e) {
            invalidate(map);
            if (e.code() != MDB_MAP_RESIZED || attempt > 0) throw MapUnavailable(e.what());
        }
    }
}

UserLookup MapReader::find(std::string_view key) {
    return with_read_txn([&](OpenMap& m, Transaction& txn) {
        UserLookup result;
        result.primary = std::string(key);
        auto value = txn.get(m.users, key);
        if (!value) {
            const auto alias = txn.get(m.aliases, key);
            if (!alias) return result;
            const auto primary = schema::decode_alias(*alias);
            if (!primary) throw MapUnavailable("unreadable alias record for " + std::string(key));
            result.primary = std::string(*primary);
            result.via_alias = true;
            value = txn.get(m.users, *primary);
            // coexist-map removes a user's aliases with it; a dangling alias is unknown.
            if (!value) return result;
        }
        result.record = decode_user(*value);
        if (!result.record)
            throw MapUnavailable("unreadable user record for " + result.primary +
                                 " (written by a newer coexist?)");
        return result;
    });
}

std::size_t MapReader::user_count() {
    return with_read_txn([](OpenMap& m, Transaction& txn) { return txn.entries(m.users); });
}

}  // namespace coexist
