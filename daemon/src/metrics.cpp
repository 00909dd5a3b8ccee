#include "coexist/metrics.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <fmt/format.h>
#include <ctime>
#include <limits>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <stdexcept>

#include "coexist/system_error.hpp"

namespace coexist {

// ---- the latency histogram ----------------------------------------------------------------

// A Prometheus histogram over atomics: prometheus-cpp's Histogram locks a mutex per Observe(),
// which every milter worker thread would contend on for every recipient. Buckets are counted
// individually (a relaxed increment each) and made cumulative at scrape time; the sum is kept
// in nanoseconds so it is an integer add too. A scrape may see an observation in one bucket and
// not yet in the sum: off by one lookup for one scrape, never lost.
class LatencyHistogram final : public prometheus::Collectable {
public:
    // Upper bounds, in seconds: an LMDB lookup takes microseconds; a slow disk or a re-open of
    // the map milliseconds; anything near a second is trouble worth its own bucket.
    static constexpr std::array<double, 14> kBounds{0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
                                                    0.001,    0.0025,  0.005,    0.01,    0.05,   0.25,   1.0};

    void observe(std::chrono::steady_clock::duration took) noexcept {
        const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(took).count();
        const double seconds = static_cast<double>(ns) / 1e9;
        std::size_t i = 0;
        while (i < kBounds.size() && seconds > kBounds[i]) ++i;
        counts_[i].fetch_add(1, std::memory_order_relaxed);  // i == kBounds.size(): +Inf only
        sum_ns_.fetch_add(static_cast<std::uint64_t>(ns < 0 ? 0 : ns), std::memory_order_relaxed);
    }

    std::vector<prometheus::MetricFamily> Collect() const override {
        prometheus::MetricFamily family;
        family.name = "coexist_lookup_duration_seconds";
        family.help = "Time route() took to decide one recipient, in seconds";
        family.type = prometheus::MetricType::Histogram;
        prometheus::ClientMetric metric;
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i <= kBounds.size(); ++i) {
            cumulative += counts_[i].load(std::memory_order_relaxed);
            metric.histogram.bucket.push_back(
                {cumulative, i < kBounds.size() ? kBounds[i] : std::numeric_limits<double>::infinity()});
        }
        metric.histogram.sample_count = cumulative;
        metric.histogram.sample_sum = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
        family.metric.push_back(std::move(metric));
        return {std::move(family)};
    }

private:
    std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> counts_{};
    std::atomic<std::uint64_t> sum_ns_{0};
};

// ---- the map's age, read at scrape time ----------------------------------------------------

// How old the map is, computed when Prometheus asks, so lookups pay nothing for it:
// - coexist_map_age_seconds: since data.mdb was last written. Every committed write of
//   coexist-map (set, import, a batch, a sync, the follower's 30-second heartbeat) writes it.
// - coexist_directory_sync_age_seconds: since the directory's last successful sync, as the map
//   records it (MapReader::directory_synced_at, what [directory] max_age is measured against);
//   absent on a map no directory ever synced.
// A sample the daemon cannot read (map missing, unreadable) is left out: the lookups' tempfails
// and map errors say why.
class MapAgeCollector final : public prometheus::Collectable {
public:
    // `map`: where the sync time is read; null in coexist-map, which must not open a reader
    // beside its writer (one LMDB environment per process and map).
    MapAgeCollector(std::string path, MapReader* map) : path_(std::move(path)), map_(map) {}

    std::vector<prometheus::MetricFamily> Collect() const override {
        std::vector<prometheus::MetricFamily> out;
        const std::time_t now = std::time(nullptr);
        struct stat st{};
        if (::stat((path_ + "/data.mdb").c_str(), &st) == 0)
            out.push_back(gauge("coexist_map_age_seconds",
                                "Seconds since the map (data.mdb) was last written",
                                static_cast<double>(now - st.st_mtim.tv_sec)));
        try {
            if (const auto synced = map_ ? map_->directory_synced_at() : std::nullopt)
                out.push_back(gauge("coexist_directory_sync_age_seconds",
                                    "Seconds since the directory's last successful sync into the map",
                                    static_cast<double>(now - *synced)));
        } catch (const std::exception&) {
            // Left out (see above).
        }
        return out;
    }

private:
    static prometheus::MetricFamily gauge(const char* name, const char* help, double value) {
        prometheus::MetricFamily family;
        family.name = name;
        family.help = help;
        family.type = prometheus::MetricType::Gauge;
        prometheus::ClientMetric metric;
        metric.gauge.value = value < 0 ? 0 : value;  // a clock stepped back: say "just now"
        family.metric.push_back(std::move(metric));
        return family;
    }

    std::string path_;
    MapReader* map_;
};

// ---- ServiceMetrics ----------------------------------------------------------------------

prometheus::Counter* ServiceMetrics::counter(Action action, bool shadow) noexcept {
    const auto index = static_cast<std::size_t>(action);
    if (index >= kMaxActions) return nullptr;
    auto& slot = shadow ? shadow_[index] : applied_[index];
    if (auto* c = slot.load(std::memory_order_acquire)) return c;
    // An action not known when the counters were laid out: its series is made on first use
    // (Family::Add returns the same series for the same labels, under the family's lock).
    try {
        auto& family = shadow ? *owner_.shadow_decisions_ : *owner_.decisions_;
        auto* c = &family.Add({{"service", service_}, {"action", std::string(to_string(action))}});
        slot.store(c, std::memory_order_release);
        return c;
    } catch (...) {
        return nullptr;
    }
}

void ServiceMetrics::count(Action action, bool shadow) noexcept {
    if (auto* c = counter(action, shadow)) c->Increment();
}

// ---- Metrics -------------------------------------------------------------------------------

Metrics::Metrics(MapReader& map)
    : registry_(std::make_shared<prometheus::Registry>()),
      latency_(std::make_shared<LatencyHistogram>()),
      map_age_(std::make_shared<MapAgeCollector>(map.path(), &map)) {
    decisions_ = &prometheus::BuildCounter()
                      .Name("coexist_decisions_total")
                      .Help("Routing decisions applied, by service and action")
                      .Register(*registry_);
    shadow_decisions_ = &prometheus::BuildCounter()
                             .Name("coexist_shadow_decisions_total")
                             .Help("Routing decisions taken in shadow mode ([routing] shadow = yes): "
                                   "logged, not applied")
                             .Register(*registry_);
    lookups_ = &prometheus::BuildCounter()
                    .Name("coexist_lookups_total")
                    .Help("Recipients decided by route()")
                    .Register(*registry_)
                    .Add({});
    tempfails_ = &prometheus::BuildCounter()
                      .Name("coexist_tempfails_total")
                      .Help("Decisions that were a temporary failure (map trouble, or doubt before a refusal)")
                      .Register(*registry_)
                      .Add({});
    map_open_errors_ = &prometheus::BuildCounter()
                            .Name("coexist_map_open_errors_total")
                            .Help("Decisions deferred because the map could not be opened or read")
                            .Register(*registry_)
                            .Add({});
}

Metrics::~Metrics() = default;

ServiceMetrics& Metrics::service(std::string_view name) {
    for (auto& s : services_)
        if (s->service_ == name) return *s;
    services_.push_back(std::unique_ptr<ServiceMetrics>(new ServiceMetrics(*this, std::string(name))));
    ServiceMetrics& s = *services_.back();
    // Every known action's series exists from the start, at 0: rate() and alerts need a series
    // before its first event.
    for (std::size_t i = 0; i < kMaxActions; ++i) {
        const auto action = static_cast<Action>(i);
        if (to_string(action) == "?") continue;
        s.counter(action, false);
        s.counter(action, true);
    }
    return s;
}

void Metrics::lookup(const RoutingDecision& decision, std::chrono::steady_clock::duration took) noexcept {
    lookups_->Increment();
    latency_->observe(took);
    if (decision.action != Action::tempfail) return;
    tempfails_->Increment();
    // route() reports every exception of the map reader (MapUnavailable, LMDB errors) so.
    if (decision.detail.rfind("map unavailable:", 0) == 0) map_open_errors_->Increment();
}

void Metrics::track_connections() {
    auto& family = prometheus::BuildGauge()
                       .Name("coexist_connections")
                       .Help("Open client connections, by listener")
                       .Register(*registry_);
    policy_connections_ = &family.Add({{"protocol", "policy"}});
    socketmap_connections_ = &family.Add({{"protocol", "socketmap"}});
}

void Metrics::connections(std::string_view protocol, int delta) noexcept {
    try {
        auto*& gauge = protocol == "policy" ? policy_connections_ : socketmap_connections_;
        if (!gauge) return;  // not a policyd: no connection gauges
        if (delta > 0) gauge->Increment(delta);
        else gauge->Decrement(-delta);
    } catch (...) {
    }
}

namespace {

// Blocks the signals a daemon handles itself (TERM, INT, HUP in a signalfd or libmilter's
// sigwait thread) and SIGPIPE for the calling thread while it lives: threads started meanwhile
// inherit the mask, so the kernel never picks one of them to run a default action.
class SignalsBlocked {
public:
    SignalsBlocked() {
        sigset_t set;
        sigemptyset(&set);
        for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE}) sigaddset(&set, s);
        if (int rc = ::pthread_sigmask(SIG_BLOCK, &set, &saved_); rc != 0) throw SystemError("pthread_sigmask", rc);
    }
    ~SignalsBlocked() { ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }
    SignalsBlocked(const SignalsBlocked&) = delete;
    SignalsBlocked& operator=(const SignalsBlocked&) = delete;

private:
    sigset_t saved_;
};

// The HTTP endpoint serving `collectables` at /metrics on `address`.
std::unique_ptr<prometheus::Exposer> serve(const std::string& address,
                                           const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables) {
    if (auto why = metrics_listen_error(address); why || address.empty())
        throw std::runtime_error("metrics_listen: " + (why ? *why : std::string("empty")));
    SignalsBlocked blocked;
    // civetweb's listening_ports syntax is ours (127.0.0.1:9187, [::1]:9187). Nothing here is on
    // the mail path. A civetweb worker serves one connection at a time and waits for a request
    // up to request_timeout_ms (30 s by default): two clients that open a connection and send
    // half a request kept /metrics from Prometheus for as long (a hostile test). So four
    // workers, and a request must arrive whole within 5 s, under Prometheus's default scrape
    // timeout of 10 s.
    std::unique_ptr<prometheus::Exposer> exposer;
    try {
        exposer = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
            "listening_ports", address, "num_threads", "4", "request_timeout_ms", "5000"});
    } catch (const std::exception& e) {
        throw std::runtime_error(fmt::format("metrics_listen {}: cannot listen: {}", address, e.what()));
    }
    for (const auto& c : collectables) exposer->RegisterCollectable(c);
    return exposer;
}

}  // namespace

void Metrics::listen(const std::string& address) { exposer_ = serve(address, {registry_, latency_, map_age_}); }

// ---- FollowerMetrics -------------------------------------------------------------------------

FollowerMetrics::FollowerMetrics(const std::string& map_path)
    : registry_(std::make_shared<prometheus::Registry>()),
      map_age_(std::make_shared<MapAgeCollector>(map_path, nullptr)) {
    auto& changes = prometheus::BuildCounter()
                        .Name("coexist_follower_changes_total")
                        .Help("Changes the directory follower committed to the map, by kind")
                        .Register(*registry_);
    for (std::size_t i = 0; i < kChangeKinds.size(); ++i) changes_[i] = &changes.Add({{"change", kChangeKinds[i]}});
    held_ = &prometheus::BuildGauge()
                 .Name("coexist_follower_removals_held")
                 .Help("Removals held beyond [directory] max_removals, waiting for 'coexist-map sync --force'")
                 .Register(*registry_)
                 .Add({});
    reconnects_ = &prometheus::BuildCounter()
                       .Name("coexist_follower_reconnects_total")
                       .Help("Times the follower lost or could not open its directory session and retried")
                       .Register(*registry_)
                       .Add({});
}

FollowerMetrics::~FollowerMetrics() = default;

void FollowerMetrics::listen(const std::string& address) { exposer_ = serve(address, {registry_, map_age_}); }

void FollowerMetrics::applied(const std::array<std::size_t, kChangeKinds.size()>& counts) noexcept {
    for (std::size_t i = 0; i < counts.size(); ++i)
        if (counts[i]) changes_[i]->Increment(static_cast<double>(counts[i]));
}

void FollowerMetrics::held(std::size_t removals) noexcept { held_->Set(static_cast<double>(removals)); }

void FollowerMetrics::reconnect() noexcept { reconnects_->Increment(); }

namespace {

template <typename Recipient>
RoutingDecision timed_route(const Config& config, MapReader& map, const Recipient& recipient,
                            Metrics& metrics) noexcept {
    const auto start = std::chrono::steady_clock::now();
    RoutingDecision d = route(config, map, recipient);
    metrics.lookup(d, std::chrono::steady_clock::now() - start);
    return d;
}

}  // namespace

RoutingDecision route_counted(const Config& config, MapReader& map, std::string_view recipient,
                              Metrics& metrics) noexcept {
    return timed_route(config, map, recipient, metrics);
}

RoutingDecision route_counted(const Config& config, MapReader& map, const Address& recipient,
                              Metrics& metrics) noexcept {
    return timed_route(config, map, recipient, metrics);
}

}  // namespace coexist
