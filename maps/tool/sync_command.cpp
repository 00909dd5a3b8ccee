// `coexist-map sync [--dry-run] [--force] [--follow]` (design 9): the map made equal to the
// directory, once or following it.
#include <csignal>
#include <fmt/format.h>
#include <ostream>

#include "commands.hpp"
#include "coexist/log.hpp"
#include "directory_sync.hpp"
#include "follower.hpp"
#include "follower_lock.hpp"

namespace coexist::tool {

namespace {

std::atomic<bool> stop_requested{false};  // set by SIGTERM/SIGINT: async-signal-safe, lock-free
extern "C" void request_stop(int) { stop_requested = true; }

}  // namespace

int sync(const Config& c, bool dry_run, bool force, bool follow, std::ostream& out, const SyncHooks& hooks) {
    if (!c.directory.configured())
        throw UsageError(fmt::format("{}: no [directory] section: this map is kept by hand", c.source));
    if (follow && (dry_run || force)) throw UsageError("--follow takes neither --dry-run nor --force");
    // libldap writes to the server's socket without MSG_NOSIGNAL: a server that went away in the
    // middle of a search (slapd restarted) killed a one-shot sync with SIGPIPE, exit 141 and no
    // word. Ignored, the write fails with EPIPE and the sync says "Can't contact LDAP server".
    std::signal(SIGPIPE, SIG_IGN);
    if (follow) {
        open_log("coexist-map", true);
        MapStore store(c.map_path, c.map_size, MapStore::Mode::read_write);
        const FollowerLock one_follower(c.map_path);
        struct sigaction sa{};
        sa.sa_handler = request_stop;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, nullptr);
        sigaction(SIGINT, &sa, nullptr);
        // SIGHUP asks a daemon to reload; the follower reads coexist.ini only when it starts.
        // Its default action killed the follower without a word. Ignored, not caught: a
        // handler would interrupt libldap's wait for the server (poll() is never restarted),
        // which then drops the connection and refreshes from the start.
        std::signal(SIGHUP, SIG_IGN);
        directory::FollowHooks follow_hooks{hooks.ready, hooks.status, hooks.applied, hooks.held, hooks.retrying};
        // The map's files replaced: the follower stopped and logged why. Returning closes the old
        // files (store); the exit status is a refused write's (MapUnavailable, 3), and systemd's
        // Restart=on-failure starts it again on the map now in place.
        if (directory::follow(c, store, stop_requested, follow_hooks) == directory::FollowEnd::map_replaced)
            return kMapUnavailable;
        if (hooks.stopping) hooks.stopping();
        return kOk;
    }
    MapStore store(c.map_path, c.map_size, MapStore::Mode::read_write);
    directory::LdapSession session(c.directory);
    std::size_t printed = 0;
    const auto change = [&](const std::string& line) {
        if (dry_run) out << line << '\n';
        ++printed;
    };
    const directory::SyncCounts counts = directory::full_sync(c, store, session, {dry_run, force}, change);
    for (const auto& w : counts.warnings) out << "warning: " << w << '\n';
    out << fmt::format("{} {}: {} entries, {} users: {} added, {} changed, {} removed, {} aliases added, {} aliases "
                       "removed, {} overrides kept, {} overrides dropped{}\n",
                       dry_run ? "would sync from" : "synced from", session.uri(), counts.entries, counts.users,
                       counts.added, counts.changed, counts.removed, counts.aliases_added, counts.aliases_removed,
                       counts.overrides, counts.overrides_dropped,
                       counts.conflicts ? fmt::format(", {} conflicts", counts.conflicts) : std::string());
    return kOk;
}

}  // namespace coexist::tool
