// coexist-policyd: the Postfix policy service (check_policy_service) and socketmap server
// (virtual_alias_maps, relay_recipient_maps) over the shared route(). Parses options and the
// configuration, opens both sockets, drops root, then hands off to the event loop (server.cpp).
#include <sys/resource.h>
#include <pthread.h>
#include <sys/socket.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <functional>
#include <fmt/format.h>

#include "coexist/config.hpp"
#include "coexist/map_watcher.hpp"
#include "coexist/listen.hpp"
#include "coexist/privileges.hpp"
#include "coexist/log.hpp"
#include "coexist/map_reader.hpp"
#include "coexist/metrics.hpp"
#include "coexist/preflight.hpp"
#include "coexist/route.hpp"
#include "coexist/service_manager.hpp"
#include "batch_io.hpp"
#include "server.hpp"

namespace {

using namespace coexist;

constexpr const char* kProgram = "coexist-policyd";

// Exit statuses.
constexpr int kExitUsage = 1;
constexpr int kExitConfig = 2;
constexpr int kExitStart = 3;

// Descriptors beyond the client connections: stdio, listeners, epoll, signalfd, the LMDB files.
constexpr rlim_t kSpareDescriptors = 64;

// Every client connection is a descriptor: make sure max_connections of them fit, raising the
// soft limit up to the hard one if needed, so accept() never fails with EMFILE in normal use.
void ensure_descriptor_limit(unsigned max_connections) {
    const rlim_t needed = max_connections + kSpareDescriptors;
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= needed) return;
    limit.rlim_cur = (limit.rlim_max == RLIM_INFINITY || limit.rlim_max >= needed) ? needed : limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur < needed)
        log_warning("max_connections = {} needs {} file descriptors, the limit is {}: connections beyond it "
                    "are refused until others close",
                    max_connections, needed, limit.rlim_cur);
}

// A failure that stops the daemon before it serves: logged, and on standard error too unless log
// lines go there already (--stderr, -n), where an admin who started it by hand looks; as
// coexist-milter does.
void report_start_failure(const std::string& text, bool log_on_stderr) {
    log_error("{}", text);
    if (!log_on_stderr) fmt::print(stderr, "{}: {}\n", kProgram, text);
}

int serve(const Config& config, bool log_on_stderr) {
    const PolicydConfig& p = config.policyd;
    // The stop signals are blocked before the first listener opens, in this thread and in every
    // thread started from here on: a SIGTERM that comes once clients can connect but before the
    // server's signalfd exists then waits for it, instead of ending the daemon by the default
    // action (seen as a stop during an ASan start-up exiting -15, not 0). The server reads
    // them from its signalfd (server.cpp).
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    for (const int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop_signals, s);
    if (const int rc = ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr); rc != 0) {
        report_start_failure(fmt::format("cannot start: pthread_sigmask: {}", std::strerror(rc)), log_on_stderr);
        return kExitStart;
    }
    ensure_descriptor_limit(p.max_connections);

    MapReader map(config.map_path);
    Metrics metrics(map);
    metrics.track_connections();
    std::vector<policyd::Listener> listeners;
    try {
        // Sockets first, while still root (a unix socket under /run or /var/spool/postfix, its
        // group and mode), then give root up for good before reading a single request.
        listeners.push_back({policyd::Protocol::policy, listen_on(p.policy_socket, SOMAXCONN), p.policy_socket.spec});
        listeners.push_back(
            {policyd::Protocol::socketmap, listen_on(p.socketmap_socket, SOMAXCONN), p.socketmap_socket.spec});
        if (!p.metrics_listen.empty()) metrics.listen(p.metrics_listen);
        drop_privileges(p.user);
    } catch (const std::exception& e) {
        report_start_failure(fmt::format("cannot start: {}", e.what()), log_on_stderr);
        return kExitStart;
    }
    const MapWatcher watcher(map);  // after the drop; gone before `map`

    const std::string metrics_text = p.metrics_listen.empty() ? "off" : p.metrics_listen;
    const char* shadow_text = config.shadow ? "yes" : "no";
    const char* log_lookups_text = config.log_lookups ? "yes" : "no";
    try {
        log_info("starting: policy={}, socketmap={}, map={} ({} users), max_connections={}, metrics={}, shadow={}, "
                 "log_lookups={}",
                 p.policy_socket.spec, p.socketmap_socket.spec, config.map_path, map.user_count(),
                 p.max_connections, metrics_text, shadow_text, log_lookups_text);
    } catch (const MapUnavailable& e) {
        // Keep serving: every decision is a temporary failure until the map is readable, which
        // defers mail instead of misrouting it, and the map is re-tried on every lookup.
        log_warning("starting with the map unavailable, every decision defers: {}", e.what());
        log_info("starting: policy={}, socketmap={}, map={}, max_connections={}, metrics={}, shadow={}, log_lookups={}",
                 p.policy_socket.spec, p.socketmap_socket.spec, config.map_path, p.max_connections,
                 metrics_text, shadow_text, log_lookups_text);
    }
    if (config.shadow)
        log_warning("shadow mode ([routing] shadow = yes): decisions are logged and counted, every "
                    "reply is one that changes nothing (DUNNO, NOTFOUND, OK)");

    // Each service's counters, made once here: the hot path only picks one.
    ServiceMetrics& policy_counts = metrics.service("policy");
    ServiceMetrics& virtual_counts = metrics.service("virtual");
    ServiceMetrics& recipients_counts = metrics.service("recipients");
    ServiceMetrics& transport_counts = metrics.service("transport");
    // Without metrics_listen nobody can read the counters: lookups are not timed or counted
    // (two clock reads and four counter updates a lookup), as coexist-milter does.
    const bool counted = !p.metrics_listen.empty();
    using Route = std::function<RoutingDecision(const Address&)>;
    using RouteText = std::function<RoutingDecision(std::string_view)>;
    using Count = std::function<void(std::string_view, Action)>;
    using Connections = std::function<void(std::string_view, int)>;
    const policyd::SessionServices services{
        counted ? Route([&config, &map, &metrics](const Address& recipient) {
            return route_counted(config, map, recipient, metrics);
        })
                : Route([&config, &map](const Address& recipient) { return route(config, map, recipient); }),
        [](const std::string& line) { log_line(LOG_INFO, line); },
        config.shadow,
        counted ? Count([&](std::string_view service, Action action) {
            ServiceMetrics& counts = service == "policy"       ? policy_counts
                                     : service == "virtual"    ? virtual_counts
                                     : service == "recipients" ? recipients_counts
                                                               : transport_counts;
            counts.count(action, config.shadow);
        })
                : Count(),
        counted ? Connections([&metrics](std::string_view protocol, int delta) { metrics.connections(protocol, delta); })
                : Connections(),
        config.log_lookups,
        counted ? RouteText([&config, &map, &metrics](std::string_view recipient) {
            return route_counted(config, map, recipient, metrics);
        })
                : RouteText([&config, &map](std::string_view recipient) { return route(config, map, recipient); }),
    };
    try {
        policyd::Server server(p, services, std::move(listeners));
        log_info("socket I/O: {}", server.socket_io());
        // The listeners were open before the privilege drop; from here on they are served.
        notify_ready();
        server.run();
        notify_stopping();
    } catch (const std::exception& e) {
        log_error("fatal: {}", e.what());
        return kExitStart;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"coexist-policyd: Postfix policy service and socketmap server for coexist routing.\n"
                 "Runs in the foreground; logs to syslog (facility mail)."};
    std::string config_path = kDefaultConfigPath;
    bool check_only = false;
    bool log_to_stderr = false;
    app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
    app.add_flag("-n,--check", check_only, "check the configuration and exit");
    app.add_flag("--stderr", log_to_stderr, "copy log lines to standard error");
    app.set_version_flag("--version", std::string(kProgram) + " " + COEXIST_VERSION);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int status = app.exit(e);
        return status == 0 ? 0 : kExitUsage;
    }

    const bool log_on_stderr = log_to_stderr || check_only;
    open_log(kProgram, log_on_stderr);
    Config config;
    try {
        config = load_config(config_path);
    } catch (const std::exception& e) {
        report_start_failure(e.what(), log_on_stderr);
        return kExitConfig;
    }
    if (check_only) {
        // Everything that would stop the daemon at start-up or defer all mail once it runs.
        const auto problems =
            preflight_problems(config, {config.policyd.user, {config.policyd.policy_socket, config.policyd.socketmap_socket}});
        for (const auto& problem : problems) log_error("{}", problem);
        if (!problems.empty()) return kExitStart;
        for (const auto* socket : {&config.policyd.policy_socket, &config.policyd.socketmap_socket})
            for (const auto& w : socket_warnings(*socket)) log_warning("warning: {}", w);
        fmt::print("{}: configuration {} is valid, user {} exists, map {} readable\n", kProgram, config_path,
                   config.policyd.user, config.map_path);
        // As the daemon would set it up, here; a sandbox of its unit can still refuse it.
        const policyd::BatchIo io(config.policyd.io_uring, 1);
        fmt::print("{}: socket I/O: {}\n", kProgram,
                   io.uses_io_uring() ? std::string("io_uring")
                                      : "system calls (no io_uring: " + io.unavailable_reason() + ")");
        return 0;
    }
    return serve(config, log_on_stderr);
}
