// `coexist-map sync --follow` (design 9, 13.5): stays connected and applies the directory's
// changes as they happen, with the LDAP Content Synchronization operation (RFC 4533,
// refreshAndPersist) where the server offers it, else a full sync every [directory] interval.
// The map keeps serving its last good state while the directory is away; the daemons never
// notice a reconnect.
#pragma once

#include <atomic>
#include <functional>

#include "coexist/config.hpp"
#include "coexist/map_store.hpp"

namespace coexist::directory {

struct SyncCounts;  // view_writer.hpp

struct FollowHooks {
    std::function<void()> ready;     // after the first complete refresh (sd_notify READY=1)
    std::function<void(const std::string&)> status;  // sd_notify STATUS=
    // For the follower's metrics ([directory] metrics_listen); each may be empty.
    std::function<void(const SyncCounts&)> applied = {};  // a write of changes was committed
    std::function<void(std::size_t)> held = {};           // removals held now, beyond max_removals
    std::function<void()> retrying = {};                  // the session ended or failed: reconnecting
};

// How follow() ended.
enum class FollowEnd {
    stopped,       // `stop` was set
    map_replaced,  // the map's data.mdb or lock.mdb was replaced or removed: logged, nothing written
};

// Runs until `stop` is set, or until the map's files are replaced (MapStore::files_replaced):
// both checked at least once a second while it waits for the directory, between polls and
// between retries. A data.mdb renamed in alone is refused by every program while this process
// keeps the old lock.mdb open, so it then logs why and returns at once, writing nothing, for
// the caller to exit and be started again. Directory errors are logged and retried with
// backoff (1 s doubling to 60 s); any other map error (MapUnavailable) is thrown.
FollowEnd follow(const Config& config, MapStore& store, const std::atomic<bool>& stop, const FollowHooks& hooks);

}  // namespace coexist::directory
