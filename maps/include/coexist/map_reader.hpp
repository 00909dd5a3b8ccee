// Read-only access to the LMDB map for the daemons and `coexist-map route`. Thread-safe: one
// MapReader is shared by all worker threads; each lookup runs in its own short read transaction,
// so a change committed by coexist-map is seen by the next lookup, with no reload.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "coexist/record.hpp"

namespace coexist {

struct OpenMap;  // an open LMDB environment and its databases (map_reader.cpp)

// Anything that stops us from reading the map: missing directory, permissions, corrupt record,
// LMDB error. Callers answer with a temporary failure.
class MapUnavailable : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct UserLookup {
    std::string primary;               // the user key the record belongs to
    std::optional<UserRecord> record;  // nullopt: no such user or alias
    bool via_alias = false;            // key was an alias of `primary`
};

class MapReader {
public:
    // Opens lazily: constructing never fails, the first lookup reports MapUnavailable.
    explicit MapReader(std::string path);
    ~MapReader();
    MapReader(const MapReader&) = delete;
    MapReader& operator=(const MapReader&) = delete;

    // `key` is a canonical user key: lowercase(base)@managed-domain. Follows one alias hop.
    // Throws MapUnavailable.
    UserLookup find(std::string_view key);

    // Number of users (for start-up summaries). Throws MapUnavailable.
    std::size_t user_count();

    const std::string& path() const { return path_; }

private:
    // The open map, opened or re-opened as needed: a map directory that was removed or
    // replaced (another inode) since it was opened is opened anew, so `rm -rf` + `init`
    // and a restore from backup are both picked up. Throws MapUnavailable.
    std::shared_ptr<OpenMap> current();
    void invalidate(const std::shared_ptr<OpenMap>& stale);
    template <typename F>
    auto with_read_txn(F&& f);

    std::string path_;
    std::mutex mutex_;  // guards env_ swaps only; lookups run without it
    std::shared_ptr<OpenMap> map_;
};

}  // namespace coexist
