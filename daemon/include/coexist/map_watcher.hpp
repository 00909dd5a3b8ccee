// Looks at the map's files once a second whether or not lookups come, so that an idle daemon
// lets go of a data.mdb or lock.mdb that was replaced (map_reader.cpp, SharedMap::refresh()).
#pragma once

#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <thread>

#include "coexist/map_reader.hpp"

namespace coexist {

// A daemon looks at its map's files at its next lookup after a second has passed. One that gets
// no lookups (the milter while Postfix's policy check defers every recipient before it; either
// daemon at night) would keep the replaced files open: a data.mdb renamed alone into the map
// directory is then refused by every other program until it lets go (lmdb.cpp, Transaction),
// and a replaced directory's old files stay in use. This thread makes that lookup-free look
// once a second. Start it after the privilege drop (it opens the map as the daemon's user);
// destroy it before `map`. Never throws beyond std::system_error from starting the thread.
class MapWatcher {
public:
    explicit MapWatcher(MapReader& map);
    ~MapWatcher();  // stops the thread and waits for it (at most one look at the files)
    MapWatcher(const MapWatcher&) = delete;
    MapWatcher& operator=(const MapWatcher&) = delete;

private:
    void run(std::stop_token stop);

    MapReader& map_;
    std::mutex mutex_;
    std::condition_variable_any wake_;
    std::jthread thread_;  // last: started once the members above exist
};

}  // namespace coexist
