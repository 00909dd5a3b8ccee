// Read-only access to the LMDB map for the daemons and `coexist-map route`. Thread-safe: one
// MapReader is shared by all worker threads. Each thread reads through a transaction handle of
// its own, renewed for every decision (a MapView) and reset after it, so a change committed by
// coexist-map is seen by the next decision, with no reload, and a lookup takes no shared lock,
// allocates no transaction and makes no syscall (design 13.3).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "coexist/record.hpp"

namespace coexist {

// Keys of the map's `meta` database that record the directory's sync state (design 9, 13.5),
// written by `coexist-map sync` in the transaction of the changes they describe.
namespace meta {
inline constexpr std::string_view kDirectorySyncedAt = "directory_synced_at";  // unix time, decimal
inline constexpr std::string_view kDirectoryUri = "directory_uri";             // where from
inline constexpr std::string_view kDirectoryCookie = "directory_cookie";       // RFC 4533 cookie of the last change followed
inline constexpr std::string_view kDirectoryCookieView = "directory_cookie_view";      // what the cookie is valid for
inline constexpr std::string_view kDirectoryCookieGroups = "directory_cookie_groups";  // the groups when it was stored
inline constexpr std::string_view kDirectoryCookieWitness = "directory_cookie_witness";  // "entryUUID entryCSN ..." of the newest entries it covers
inline constexpr std::string_view kDirectoryCookieDeleted = "directory_cookie_deleted";  // entryUUIDs of the last entries it saw leave
inline constexpr std::string_view kDirectoryHeldRemovals = "directory_held_removals";  // removals beyond max_removals, waiting for --force
inline constexpr std::string_view kDirectoryFollowing = "directory_following";   // "refreshAndPersist" or "poll", with the time
}  // namespace meta

class SharedMap;     // the process's one environment on a map directory (map_reader.cpp)
struct ReaderSlot;   // one thread's read transaction handle on it (map_reader.cpp)

// Anything that stops us from reading the map: missing directory, permissions, a damaged or
// truncated data.mdb, corrupt record, LMDB error. Callers answer with a temporary failure.
class MapUnavailable : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The map's files are not the ones this process may read together: a data.mdb renamed in alone
// while other programs keep the old lock.mdb open, or a lock.mdb this process cannot write. It
// lasts until something else changes (every program lets go of the map, or the daemon is
// restarted), so a reader looks again after a pause, not at every lookup: each attempt holds
// lock.mdb open for a moment, and several busy daemons trying at every lookup kept the map
// held by one of them all the time, and so refused for as long as mail flowed.
class MapFilesMismatch : public MapUnavailable {
public:
    using MapUnavailable::MapUnavailable;
};

struct UserLookup {
    std::string primary;               // the user key the record belongs to
    std::optional<UserRecord> record;  // nullopt: no such user or alias
    bool via_alias = false;            // key was an alias of `primary`
};

class MapReader {
public:
    // Opens lazily: constructing never fails, the first lookup reports MapUnavailable.
    // MapReaders of the same path in one process share one LMDB environment (LMDB forbids two:
    // closing one would drop the other's locks on lock.mdb).
    explicit MapReader(std::string path);
    ~MapReader();
    MapReader(const MapReader&) = delete;
    MapReader& operator=(const MapReader&) = delete;

    // `key` is a canonical user key: lowercase(base)@managed-domain. Follows one alias hop.
    // Throws MapUnavailable.
    UserLookup find(std::string_view key);

    // How many users of `domain` (a managed domain's name) the map holds; nullopt when the map
    // was written before these counts were kept. Asked only before refusing an unknown user,
    // never on the lookup path of every recipient. Throws MapUnavailable.
    std::optional<std::size_t> domain_user_count(std::string_view domain);

    // Unix time of the directory's last successful full sync (design 13.6 max_age); nullopt
    // when no directory ever synced this map. Asked only before refusing an unknown user.
    // Throws MapUnavailable.
    std::optional<std::int64_t> directory_synced_at();

    // Number of users (for start-up summaries). Throws MapUnavailable.
    std::size_t user_count();

    // Looks at the map's files again at the next lookup instead of within the second (design
    // 13.3): for a caller that knows the map was just replaced. Never throws.
    void recheck() noexcept;

    const std::string& path() const { return path_; }

private:
    friend class MapView;
    std::string path_;
    SharedMap* shared_;  // counted in the process's registry of maps (map_reader.cpp)
};

// One snapshot of the map for the lookups of one decision (route(): the whole local part, the
// part before the delimiter, the alias hop, the counts behind a refusal all see the same
// commit). It holds the calling thread's transaction handle, so it belongs to that thread: keep
// it for one decision, not across waits, as a re-open or resize of the map waits for it. A view made while the
// same thread already holds one on the same map shares that one's snapshot. The methods are
// MapReader's, with the same errors (MapUnavailable).
class MapView {
public:
    explicit MapView(MapReader& reader);  // Throws MapUnavailable.
    ~MapView();
    MapView(const MapView&) = delete;
    MapView& operator=(const MapView&) = delete;

    UserLookup find(std::string_view key);
    std::optional<std::size_t> domain_user_count(std::string_view domain);
    std::optional<std::int64_t> directory_synced_at();
    std::size_t user_count();

private:
    SharedMap* shared_;
    ReaderSlot* slot_;
};

}  // namespace coexist
