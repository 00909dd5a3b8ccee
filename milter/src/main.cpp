// coexist-milter: parse options and config, open the socket, drop root, log a summary, tell
// systemd it is ready, then hand over to libmilter's smfi_main until SIGTERM/SIGINT (SIGHUP is
// ignored: see libmilter_run.hpp).
#include <libmilter/mfapi.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>

#include "coexist/accounts.hpp"
#include "coexist/config.hpp"
#include "coexist/privileges.hpp"
#include "coexist/socket_spec.hpp"
#include "coexist/log.hpp"
#include "coexist/map_reader.hpp"
#include "coexist/map_watcher.hpp"
#include "coexist/metrics.hpp"
#include "coexist/preflight.hpp"
#include "coexist/service_manager.hpp"
#include "filter.hpp"
#include "libmilter_run.hpp"
#include "milter_socket.hpp"
#include "worker_threads.hpp"

namespace {

using namespace coexist;

// Exit codes (coexist-milter(8)).
constexpr int kExitOk = 0;
constexpr int kExitUsage = 1;
constexpr int kExitConfig = 2;
constexpr int kExitStart = 3;

struct Options {
    std::string config = kDefaultConfigPath;
    bool check = false;
    bool also_stderr = false;
};

// The config and everything in it that start-up would trip over later.
Config checked_config(const std::string& path) {
    Config config = load_config(path);
    if (!parse_socket_spec(config.milter.socket.spec))
        throw ConfigError(path, 0, "socket", "bad socket specification '" + config.milter.socket.spec + "'");
    return config;
}

std::string host_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
    return buf;
}

std::string domain_summary(const Config& config) {
    std::string out;
    for (const auto& d : config.domains) {
        if (!out.empty()) out += " ";
        out += d.name + "->" + d.routing_domain;
        for (const auto& a : d.aliases) out += "," + a;
    }
    return out.empty() ? "(none)" : out;
}

// The configuration file as the log should name it: absolute, so that a relative -c given from
// some directory still says which file (the path as given when the directory is unknown).
std::string absolute_path(const std::string& path) {
    std::error_code ec;
    const auto absolute = std::filesystem::absolute(path, ec);
    return ec ? path : absolute.lexically_normal().string();
}

// `user`: whom the milter serves as: the run-as user after a drop from root, else the invoking one.
void log_summary(const Options& options, const Config& config, MapReader& map, const std::string& user) {
    std::string users;
    try {
        users = std::to_string(map.user_count());
    } catch (const std::exception& e) {
        log_warning("map {} unavailable at start-up, recipients of managed domains are deferred "
                    "until it can be read: {}", config.map_path, e.what());
        users = "unavailable";
    }
    log_info("starting coexist-milter {}: config={}, map={}, users={}, domains={}, socket={}, "
             "user={}, loop_limit={}, metrics={}, shadow={} (SIGHUP is ignored: restart to apply "
             "configuration changes)", COEXIST_VERSION, absolute_path(options.config), config.map_path, users,
             domain_summary(config), config.milter.socket.spec, user,
             config.loop_limit, config.milter.metrics_listen.empty() ? "off" : config.milter.metrics_listen,
             config.shadow ? "yes" : "no");
    if (config.shadow)
        log_warning("shadow mode ([routing] shadow = yes): decisions are logged and counted, no "
                    "recipient is changed, refused or deferred");
}

int serve(const Options& options, const Config& config) {
    // Before the socket opens and before the metrics threads start (libmilter_run.hpp).
    milter::arrange_signals_for_smfi_main();
    MapReader map(config.map_path);
    Metrics metrics(map);
    // Without metrics_listen nobody can read the counters: recipients are not timed or counted
    // (two clock reads and three counter updates each), as coexist-policyd does.
    const bool counted = !config.milter.metrics_listen.empty();
    const milter::FilterEnvironment env{&config, &map, host_name(), counted ? &metrics : nullptr,
                                        counted ? &metrics.service("milter") : nullptr};
    milter::install_environment(&env);

    smfiDesc description = milter::filter_description();
    if (smfi_register(description) != MI_SUCCESS) throw std::runtime_error("smfi_register failed");
    smfi_settimeout(static_cast<int>(config.milter.timeout_seconds));
    milter::open_milter_socket(config.milter.socket, config.milter.user);
    // Before the privilege drop, like the milter socket.
    if (!config.milter.metrics_listen.empty()) metrics.listen(config.milter.metrics_listen);
    const bool was_root = ::geteuid() == 0;
    drop_privileges(config.milter.user);
    if (was_root) log_info("running as user {}", config.milter.user);
    // After the drop: a first map open as root could create lock.mdb that the user can't write.
    log_summary(options, config, map, was_root ? config.milter.user : current_user_name());
    const MapWatcher watcher(map);  // after the drop; gone before `map`
    // The threads started from here on are libmilter's: its signal thread, its listener and
    // its workers (worker_threads.hpp). The metrics and map watcher threads keep theirs.
    milter::set_default_thread_stack(milter::kWorkerThreadStackBytes);

    const int rc = milter::run_smfi_main(notify_ready);
    notify_stopping();
    if (rc != MI_SUCCESS) {
        // libmilter says why in its own syslog line (e.g. "Unable to bind to port"), which
        // --stderr does not copy: standard error gets at least this.
        log_error("libmilter's main loop failed on {} (its own log line says why)", config.milter.socket.spec);
        if (!options.also_stderr)
            std::fprintf(stderr, "coexist-milter: libmilter's main loop failed on %s (its own log line says why)\n",
                         config.milter.socket.spec.c_str());
    }
    log_info("coexist-milter stopped");
    return rc == MI_SUCCESS ? kExitOk : kExitStart;
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    CLI::App app{"coexist-milter: Postfix milter that routes migrated users' mail to the new system"};
    app.add_option("-c,--config", options.config, "configuration file")->capture_default_str();
    app.add_flag("-n,--check", options.check, "check the configuration and exit");
    app.add_flag("--stderr", options.also_stderr, "copy log lines to standard error");
    app.set_version_flag("--version", std::string("coexist-milter ") + COEXIST_VERSION);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? kExitOk : kExitUsage;
    }

    // A start (not -n) logs from here on, so that a configuration the daemon refuses is in the
    // mail log as coexist-policyd's is, not only on a standard error that systemd files under
    // another facility. A start failure is said on standard error too (below).
    if (!options.check) open_log("coexist-milter", options.also_stderr);
    Config config;
    try {
        config = checked_config(options.config);
    } catch (const std::exception& e) {
        if (!options.check) log_error("{}", e.what());
        if (options.check || !options.also_stderr) std::fprintf(stderr, "coexist-milter: %s\n", e.what());
        return kExitConfig;
    }
    if (options.check) {
        // Everything that would stop the milter at start-up or defer all mail once it runs.
        const auto problems = preflight_problems(config, {config.milter.user, {config.milter.socket}});
        for (const auto& p : problems) std::fprintf(stderr, "coexist-milter: %s\n", p.c_str());
        if (!problems.empty()) return kExitStart;
        for (const auto& w : socket_warnings(config.milter.socket))
            std::fprintf(stderr, "coexist-milter: warning: %s\n", w.c_str());
        std::printf("coexist-milter: %s: configuration OK, user %s exists, map %s readable\n",
                    options.config.c_str(), config.milter.user.c_str(), config.map_path.c_str());
        return kExitOk;
    }

    try {
        return serve(options, config);
    } catch (const std::exception& e) {
        // In the mail log, and on standard error for an admin who started it by hand (exit 3
        // with nothing printed said nothing); --stderr copies the log line there already.
        log_error("fatal: {}", e.what());
        if (!options.also_stderr) std::fprintf(stderr, "coexist-milter: fatal: %s\n", e.what());
        return kExitStart;
    }
}
