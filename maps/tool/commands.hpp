// coexist-map's subcommands. Each takes the loaded config, writes what it prints to `out`, and
// reports failure by throwing (main.cpp turns the exception into the exit status).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "coexist/config.hpp"

namespace coexist::directory {
struct SyncCounts;  // view_writer.hpp
}

namespace coexist::tool {

// Exit statuses (design section 4).
enum ExitStatus { kOk = 0, kUsage = 1, kDataError = 2, kMapUnavailable = 3 };

// A command line that makes no sense (exit 1).
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Bad data from the admin: an address, a state, a CSV row. Exit 2, map unchanged.
class DataError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

int init(const Config& c, std::ostream& out);
// A directory-owned user (design 13.1) gets the state as an override; clear_override drops it.
// `at` (ISO 8601 with an offset, design 13.6): schedule the state instead of setting it now.
int set(const Config& c, const std::string& address, const std::optional<std::string>& state,
        const std::optional<std::string>& target, const std::optional<std::string>& batch, bool clear_override,
        const std::optional<std::string>& at, std::ostream& out);
inline int set(const Config& c, const std::string& address, const std::string& state,
               const std::optional<std::string>& target, const std::optional<std::string>& batch, std::ostream& out) {
    return set(c, address, std::optional<std::string>(state), target, batch, false, std::nullopt, out);
}
int remove(const Config& c, const std::string& address, std::ostream& out);
int alias(const Config& c, const std::string& alias, const std::string& primary, std::ostream& out);
int unalias(const Config& c, const std::string& alias, std::ostream& out);
int get(const Config& c, const std::string& address, std::ostream& out);
// `coexist-map route [--explain] ADDRESS... | -` ('-' reads addresses from stdin, one a line).
// An address that is not one prints an error on stderr; the exit status is then 2 at the end
// (3 when any answer was a tempfail).
int route(const Config& c, const std::vector<std::string>& addresses, bool explain, std::ostream& out);
inline int route(const Config& c, const std::vector<std::string>& addresses, std::ostream& out) {
    return route(c, addresses, false, out);
}
int list(const Config& c, const std::optional<std::string>& state, const std::optional<std::string>& batch,
         std::ostream& out);
int export_csv(const Config& c, std::ostream& out);
// `stats` (stats.cpp): counts per state, batch and domain; json: the form coexist-map(8)
// documents, for scripts and monitoring.
int stats(const Config& c, bool json, std::ostream& out);
inline int stats(const Config& c, std::ostream& out) { return stats(c, false, out); }

// `history` (history.cpp): the audit trail, oldest change first. UsageError for a bad --since
// or --format; DataError when an address given has no history at all.
struct HistoryQuery {
    std::optional<std::string> address;  // nullopt: every address
    std::optional<std::string> batch;    // the batch recorded in the entry, else the user's current one
    std::optional<std::string> since;    // ISO 8601 with an offset (iso_time.hpp); entries at or after it
    std::string format = "text";         // text | csv (RFC 4180, header row)
};
int history(const Config& c, const HistoryQuery& query, std::ostream& out);
inline int history(const Config& c, const std::string& address, std::ostream& out) {
    return history(c, HistoryQuery{address, std::nullopt, std::nullopt, "text"}, out);
}

// `dump` (dump.cpp): the whole map as JSON Lines on `out` (dump_format.hpp), from one read
// transaction. `restore` (restore.cpp): a dump into an empty map (any map with `replace`), in
// one write transaction: all of it or nothing. `file` "-" reads standard input. DataError
// "FILE:LINE: reason" for a malformed line or a dump of a newer schema, map unchanged.
int dump(const Config& c, std::ostream& out);
int restore(const Config& c, const std::string& file, bool replace, std::ostream& out);
// One line: a SHA-256 of everything that decides routing (records, aliases, overrides, the
// routing settings of the INI), so two relays can be compared with one command each.
int digest(const Config& c, std::ostream& out);
// What `sync --follow` tells the service manager (sd_notify from main.cpp; empty = nothing).
struct SyncHooks {
    std::function<void()> ready;
    std::function<void(const std::string&)> status;
    std::function<void()> stopping;
    // sync --follow's metrics (directory::FollowHooks); each may be empty.
    std::function<void(const directory::SyncCounts&)> applied = {};
    std::function<void(std::size_t)> held = {};
    std::function<void()> retrying = {};
};
// `coexist-map sync [--dry-run] [--force] [--follow]` (sync_command.cpp). Throws
// directory::DirectoryError and directory::RemovalLimitExceeded (main.cpp: exit 2).
int sync(const Config& c, bool dry_run, bool force, bool follow, std::ostream& out, const SyncHooks& hooks = {});
// `coexist-map import FILE [--batch NAME] [--prune] [--dry-run]` (import.cpp, design 10 and 13.4).
struct ImportOptions {
    std::optional<std::string> batch;  // for rows without one; with prune, the batch pruned
    bool dry_run = false;              // print the whole diff, write nothing
    bool prune = false;                // remove the admin-owned users not in the file
    std::optional<std::string> state;  // for rows without one (default migrated): a batch
                                       // imported as source, to be scheduled with batch set --at
    bool force = false;                // prune even more than half of the users in scope
};
// `out`: the diff (dry run) or the removals, then a summary line; `err`: the warning naming
// ignored columns. Bad rows: DataError listing every one (up to 100), the map unchanged.
int import_csv(const Config& c, const std::string& file, const ImportOptions& options, std::ostream& out,
               std::ostream& err);
// The same without --prune, warnings to standard error.
int import_csv(const Config& c, const std::string& file, const std::optional<std::string>& batch, bool dry_run,
               std::ostream& out);

// `coexist-map batch list|set|cancel` (batch_command.cpp, design 10). set: `state` now, or at
// `at`; refuses an unknown or empty batch (DataError).
int batch_list(const Config& c, std::ostream& out);
int batch_set(const Config& c, const std::string& name, const std::string& state, const std::optional<std::string>& at,
              bool dry_run, std::ostream& out);
int batch_cancel(const Config& c, const std::string& name, std::ostream& out);
// The unix time of an --at value, which must be ISO 8601 with an offset and in the future
// (DataError otherwise).
std::int64_t scheduled_time_or_throw(const std::string& at, std::int64_t now);
// "in 2 h 5 min", "3 s ago": how far `when` is from `now`, for the admin.
std::string relative_time(std::int64_t when, std::int64_t now);

// Shared by the commands: the key of an address the admin gave, or DataError.
std::string user_key_or_throw(const Config& c, const std::string& address);
// A batch name: printable, no control bytes, at most 64 bytes. DataError otherwise.
std::string checked_batch(const std::string& batch);
// A batch name given on the command line (set --batch, import --batch): checked_batch's rules,
// and no blank at its start or end, as a CSV cell has none once trimmed. DataError otherwise.
std::string checked_batch_argument(const std::string& batch);
// A batch name that selects users (batch set/cancel NAME, list/commands/history --batch NAME):
// DataError when it is empty, which would select every user without a batch (an unset shell
// variable in a script: `batch set "$WAVE" source` must not roll back all the others).
void require_batch_name(const std::string& batch);
inline void require_batch_name(const std::optional<std::string>& batch) {
    if (batch) require_batch_name(*batch);
}
std::string format_time(long long unix_time);
// The group the daemons run in (the primary group of [milter] user, else of [policyd] user):
// the map directory init and restore create belongs to it. nullopt when neither user exists.
std::optional<gid_t> daemon_group(const Config& c);

}  // namespace coexist::tool
