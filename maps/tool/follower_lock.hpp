// One `coexist-map sync --follow` per map: the follower holds an exclusive flock(2) on the map's
// data.mdb for as long as it runs. Two followers on one map would each apply every change, keep
// their own max_removals windows and overwrite each other's syncrepl cookie, so a second one (a
// follower started by hand beside the systemd unit, or two units naming the same map) is refused
// instead. flock, not fcntl: LMDB's own locks are fcntl locks on lock.mdb, which closing any other
// descriptor of that file would drop; data.mdb carries none, and a flock belongs to this open file
// description alone. Readers and one-shot commands (import, set, sync) do not take it.
#pragma once

#include <string>

#include "coexist/system_error.hpp"

namespace coexist::tool {

class FollowerLock {
public:
    // Locks `map_path`/data.mdb. Throws MapUnavailable when another process holds the lock (its
    // message says what to do) or the file cannot be opened.
    explicit FollowerLock(const std::string& map_path);

private:
    FileDescriptor fd_;
};

}  // namespace coexist::tool
