// Prometheus metrics of a daemon (design sections 12 and 13.6): the registry, the counters the
// hot path bumps, and the HTTP exposer serving them on `metrics_listen`. The core (maps/) knows
// nothing of this; the daemons hand it each decision.
//
// Cost on the hot path: one relaxed atomic add per counter (prometheus-cpp's Counter is an
// atomic double; coexist's own latency histogram is atomic buckets, because prometheus-cpp's
// Histogram takes a mutex per observation). No lock, no allocation, no label lookup per
// decision: every labelled series is created up front.
//
// Names (documented in coexist-milter(8) and coexist-policyd(8)):
//   coexist_decisions_total{service,action}         decisions applied, by action
//   coexist_shadow_decisions_total{service,action}  decisions taken in shadow mode (nothing applied)
//   coexist_lookups_total                           route() calls
//   coexist_tempfails_total                         route() answered tempfail (map trouble, doubt)
//   coexist_map_open_errors_total                   of those, the map could not be opened or read
//   coexist_lookup_duration_seconds                 histogram of route()'s latency
//   coexist_map_age_seconds                         since the map's last write (data.mdb's mtime)
//   coexist_directory_sync_age_seconds              since the directory's last sync (directory-fed maps)
//   coexist_connections{protocol}                   open client connections (coexist-policyd)
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "coexist/config.hpp"
#include "coexist/map_reader.hpp"
#include "coexist/route.hpp"

namespace prometheus {
class Counter;
class Exposer;
template <typename T>
class Family;
class Gauge;
class Registry;
}  // namespace prometheus

namespace coexist {

class LatencyHistogram;  // metrics.cpp
class MapAgeCollector;   // metrics.cpp

// The most Action values the counters are laid out for; an Action beyond the ones known at
// start-up gets its series on first use.
inline constexpr std::size_t kMaxActions = 16;

class Metrics;

// The decision counters of one service ("milter"; "policy", "virtual", "recipients"), created
// by Metrics::service() and valid as long as the Metrics. Thread-safe.
class ServiceMetrics {
public:
    // Counts one decision that was applied, or only logged when `shadow`. Never throws.
    void count(Action action, bool shadow) noexcept;

private:
    friend class Metrics;
    ServiceMetrics(Metrics& owner, std::string service) : owner_(owner), service_(std::move(service)) {}
    prometheus::Counter* counter(Action action, bool shadow) noexcept;

    Metrics& owner_;
    std::string service_;
    std::array<std::atomic<prometheus::Counter*>, kMaxActions> applied_{};
    std::array<std::atomic<prometheus::Counter*>, kMaxActions> shadow_{};
};

class Metrics {
public:
    // `map` is read at each scrape (never per lookup) for the map's age; it must outlive this
    // object. Counts from construction on; serves nothing until listen().
    explicit Metrics(MapReader& map);
    ~Metrics();
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    // Serves GET /metrics on `address` ("HOST:PORT", "[IPv6]:PORT", as config.hpp's
    // metrics_listen_error() accepts). Call before dropping privileges, like the other sockets.
    // The HTTP server's threads are started with SIGTERM, SIGINT, SIGHUP and SIGPIPE blocked,
    // so the daemon's own signal handling keeps them. Throws std::runtime_error (the port is
    // taken, the address is not local).
    void listen(const std::string& address);

    // The counters of one service, created once (at start-up: this locks the registry).
    ServiceMetrics& service(std::string_view name);

    // One route() call that took `took`; `decision` tells tempfails and map errors apart.
    // Never throws; lock-free.
    void lookup(const RoutingDecision& decision, std::chrono::steady_clock::duration took) noexcept;

    // Adds the coexist_connections gauges (policyd's listeners, "policy" and "socketmap").
    void track_connections();
    // Open connections of a listener: +1 or -1. Nothing before track_connections().
    void connections(std::string_view protocol, int delta) noexcept;

private:
    friend class ServiceMetrics;

    std::shared_ptr<prometheus::Registry> registry_;
    prometheus::Family<prometheus::Counter>* decisions_ = nullptr;
    prometheus::Family<prometheus::Counter>* shadow_decisions_ = nullptr;
    std::shared_ptr<LatencyHistogram> latency_;
    std::shared_ptr<MapAgeCollector> map_age_;
    prometheus::Counter* lookups_ = nullptr;
    prometheus::Counter* tempfails_ = nullptr;
    prometheus::Counter* map_open_errors_ = nullptr;
    prometheus::Gauge* policy_connections_ = nullptr;
    prometheus::Gauge* socketmap_connections_ = nullptr;
    std::vector<std::unique_ptr<ServiceMetrics>> services_;
    std::unique_ptr<prometheus::Exposer> exposer_;  // last: stopped first, before what it reads
};

// The metrics of `coexist-map sync --follow` ([directory] metrics_listen, design 13.6): the
// follower's changes, the removals it holds, its reconnects, and the map's age. Thread-safe.
//   coexist_follower_changes_total{change="added|changed|removed|aliases_added|aliases_removed"}
//   coexist_follower_removals_held      removals held beyond max_removals (gauge)
//   coexist_follower_reconnects_total   directory sessions lost or refused, then retried
//   coexist_map_age_seconds             as for the daemons
class FollowerMetrics {
public:
    static constexpr std::array<const char*, 5> kChangeKinds{"added", "changed", "removed", "aliases_added",
                                                             "aliases_removed"};

    explicit FollowerMetrics(const std::string& map_path);
    ~FollowerMetrics();
    FollowerMetrics(const FollowerMetrics&) = delete;
    FollowerMetrics& operator=(const FollowerMetrics&) = delete;

    // As Metrics::listen. Throws std::runtime_error.
    void listen(const std::string& address);

    // One committed write: how many of each kChangeKinds, in that order.
    void applied(const std::array<std::size_t, kChangeKinds.size()>& counts) noexcept;
    void held(std::size_t removals) noexcept;
    void reconnect() noexcept;

private:
    std::shared_ptr<prometheus::Registry> registry_;
    std::shared_ptr<MapAgeCollector> map_age_;
    std::array<prometheus::Counter*, kChangeKinds.size()> changes_{};
    prometheus::Gauge* held_ = nullptr;
    prometheus::Counter* reconnects_ = nullptr;
    std::unique_ptr<prometheus::Exposer> exposer_;  // last: stopped first
};

// route() for a daemon: the decision, counted as a lookup of `metrics` with its latency.
// Never throws (route() never does, nor does Metrics::lookup()).
RoutingDecision route_counted(const Config& config, MapReader& map, std::string_view recipient,
                              Metrics& metrics) noexcept;
// The same for a recipient already parsed (route.hpp).
RoutingDecision route_counted(const Config& config, MapReader& map, const Address& recipient,
                              Metrics& metrics) noexcept;

}  // namespace coexist
