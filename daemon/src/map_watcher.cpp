#include "coexist/map_watcher.hpp"

#include <chrono>

namespace coexist {

MapWatcher::MapWatcher(MapReader& map) : map_(map), thread_([this](std::stop_token stop) { run(stop); }) {}

MapWatcher::~MapWatcher() {
    thread_.request_stop();
    wake_.notify_all();
}  // thread_ joins here, before the members it uses are gone

void MapWatcher::run(std::stop_token stop) {
    std::unique_lock lock(mutex_);
    while (!stop.stop_requested()) {
        // The same interval as the lookups' own look (kRecheckInterval): a view is a lookup
        // without a key, and looks at the files when a second has passed since the last look.
        wake_.wait_for(lock, stop, std::chrono::seconds(1), [] { return false; });
        if (stop.stop_requested()) break;
        try {
            MapView look(map_);
        } catch (...) {
            // The map unavailable (the lookups say why) or no memory: look again in a second.
        }
    }
}

}  // namespace coexist
