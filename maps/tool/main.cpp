// coexist-map: keeps the LMDB map of users, their state and aliases. The only writer of the map;
// every command is one transaction, live for the running daemons as soon as it commits.
#include <CLI/CLI.hpp>

#include <iostream>

#include "coexist/config.hpp"
#include "coexist/log_text.hpp"
#include "coexist/map_reader.hpp"
#include "check_command.hpp"
#include "commands.hpp"
#include "commands_scripts.hpp"
#include "directory_sync.hpp"
#include "terminal_safe_stream.hpp"
#ifdef COEXIST_HAVE_SERVICE_MANAGER
#include <memory>

#include "coexist/metrics.hpp"
#include "coexist/service_manager.hpp"
#include "view_writer.hpp"
#endif

using namespace coexist;
using namespace coexist::tool;

int main(int argc, char** argv) {
    // Every message on standard error, the option parser's included, with control characters
    // shown as '?' (terminal_safe_stream.hpp).
    const TerminalSafeStream safe_errors(std::cerr);
    CLI::App app{"coexist-map: manage the coexist routing map (users, states, aliases)", "coexist-map"};
    app.set_version_flag("--version", std::string("coexist-map ") + COEXIST_VERSION);
    app.require_subcommand(1);
    std::string config_path = kDefaultConfigPath;
    app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();

    std::string address, address2, state, file;
    std::optional<std::string> target, batch, state_filter;
    std::vector<std::string> addresses;
    bool dry_run = false, force = false, follow = false, clear_override = false, explain = false;
    std::optional<std::string> at;
    std::optional<std::string> set_state;

    auto* init_cmd = app.add_subcommand("init", "create the map (or check an existing one)");
    auto* import_cmd = app.add_subcommand("import", "import users from CSV: all rows or nothing");
    import_cmd->add_option("file", file, "CSV file (header: address,state,target,batch,aliases), - for stdin")->required();
    import_cmd->add_option("--batch", batch, "batch name for rows without one (with --prune: the batch pruned)");
    import_cmd->add_flag("--dry-run", dry_run, "validate and print every change as a diff; write nothing");
    bool prune = false;
    import_cmd->add_flag("--prune", prune, "remove the users set by hand that are not in the file");
    import_cmd->add_flag("--force", force, "with --prune: remove even more than half of the users in scope");
    std::optional<std::string> import_state;
    import_cmd->add_option("--state", import_state, "state for rows without one (default migrated)");
    auto* set_cmd = app.add_subcommand("set", "add a user or change its state");
    set_cmd->add_option("address", address, "user address")->required();
    set_cmd->add_option("state", set_state, "source, migrated or dual (on a directory-owned user: an override)");
    set_cmd->add_flag("--clear-override", clear_override, "follow the directory again (drop the admin's override)");
    set_cmd->add_option("--target", target, "explicit routing address (empty to clear)");
    set_cmd->add_option("--batch", batch, "batch name");
    set_cmd->add_option("--at", at, "schedule STATE for this time (ISO 8601 with Z or an offset) instead of now");
    auto* remove_cmd = app.add_subcommand("remove", "remove a user and its aliases");
    remove_cmd->add_option("address", address, "user address")->required();
    auto* alias_cmd = app.add_subcommand("alias", "make ALIAS lead to PRIMARY");
    alias_cmd->add_option("alias", address, "alias address")->required();
    alias_cmd->add_option("primary", address2, "primary user address")->required();
    auto* unalias_cmd = app.add_subcommand("unalias", "remove an alias");
    unalias_cmd->add_option("alias", address, "alias address")->required();
    auto* get_cmd = app.add_subcommand("get", "show a user (or an alias and its user)");
    get_cmd->add_option("address", address, "address")->required();
    auto* route_cmd = app.add_subcommand("route", "print where each address goes, as the daemons decide");
    route_cmd->add_option("address", addresses, "recipient addresses; - reads them from stdin, one a line")->required();
    route_cmd->add_flag("--explain", explain, "say why: the domain, each lookup, the record, the alias hop, the schedule");
    auto* list_cmd = app.add_subcommand("list", "list users");
    list_cmd->add_option("--state", state_filter, "only users in this state");
    list_cmd->add_option("--batch", batch, "only users of this batch");
    auto* export_cmd = app.add_subcommand("export", "write the map as CSV that import reads back unchanged");
    bool json = false, replace = false;
    HistoryQuery history_query;
    auto* stats_cmd = app.add_subcommand("stats", "counts per state, batch and domain, and map size");
    stats_cmd->add_flag("--json", json, "one JSON object (fields in coexist-map(8))");
    auto* batch_cmd = app.add_subcommand("batch", "a migration batch at once: list, set (now or --at), cancel");
    batch_cmd->require_subcommand(1);
    auto* batch_list_cmd = batch_cmd->add_subcommand("list", "each batch: users per state, pending changes");
    auto* batch_set_cmd = batch_cmd->add_subcommand("set", "set every user of the batch (start=dual, complete=migrated, rollback=source)");
    batch_set_cmd->add_option("name", address, "batch name")->required();
    batch_set_cmd->add_option("state", state, "source, migrated or dual")->required();
    batch_set_cmd->add_option("--at", at, "schedule it for this time (ISO 8601 with Z or an offset)");
    batch_set_cmd->add_flag("--dry-run", dry_run, "print what would change; write nothing");
    auto* batch_cancel_cmd = batch_cmd->add_subcommand("cancel", "drop the batch's pending scheduled change");
    batch_cancel_cmd->add_option("name", address, "batch name")->required();
    auto* sync_cmd = app.add_subcommand("sync", "make the map equal to the [directory], in one transaction");
    sync_cmd->add_flag("--dry-run", dry_run, "read the directory and print what would change; write nothing");
    sync_cmd->add_flag("--force", force, "apply removals beyond max_removals");
    sync_cmd->add_flag("--follow", follow, "stay connected and apply changes as they happen (RFC 4533, else poll)");
    auto* digest_cmd = app.add_subcommand("digest", "one line: a hash of all that decides routing, to compare relays");
    auto* history_cmd = app.add_subcommand("history", "the audit trail, of one address or all, oldest first");
    history_cmd->add_option("address", history_query.address, "address (default: every address)");
    history_cmd->add_option("--batch", history_query.batch, "only changes of users in this batch");
    history_cmd->add_option("--since", history_query.since, "only changes at or after this time (ISO 8601 with Z or offset)");
    history_cmd->add_option("--format", history_query.format, "text or csv")->check(CLI::IsMember({"text", "csv"}));
    auto* dump_cmd = app.add_subcommand("dump", "write the whole map with its history as JSON Lines on stdout");
    auto* restore_cmd = app.add_subcommand("restore", "load a dump into an empty map (or --replace one), all or nothing");
    restore_cmd->add_option("file", file, "dump file, - for stdin")->required();
    restore_cmd->add_flag("--replace", replace, "replace a map that is not empty");
    auto* commands_cmd = app.add_subcommand("commands", "print the script the other system needs: gam (Google) or exo (Exchange Online)");
    std::string script_system;
    commands_cmd->add_option("system", script_system, "gam or exo")->required()->check(CLI::IsMember({"gam", "exo"}));
    commands_cmd->add_option("--batch", batch, "only users of this batch");
    commands_cmd->add_option("--state", state_filter, "only users in this state (source: the undo)");
    auto* check_cmd = app.add_subcommand("check", "check that the daemons can read the map as their user, and Postfix's smtputf8_enable");
    std::string postfix_dir = kDefaultPostfixConfigDir;
    check_cmd->add_option("--postfix-config", postfix_dir, "Postfix configuration directory")->capture_default_str();

    // A data error says "(map unchanged)" only for a command that would have written the map:
    // after `get` or `route` it would suggest that they might have changed it.
    const auto writes_map = [&] {
        return init_cmd->parsed() || import_cmd->parsed() || set_cmd->parsed() || remove_cmd->parsed() ||
               alias_cmd->parsed() || unalias_cmd->parsed() || batch_set_cmd->parsed() ||
               batch_cancel_cmd->parsed() || sync_cmd->parsed() || restore_cmd->parsed();
    };
    const auto unchanged = [&] { return writes_map() ? " (map unchanged)" : ""; };

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // A misspelt command is left over as an extra argument, and CLI11 then says only "A
        // subcommand is required": name it instead.
        if (dynamic_cast<const CLI::RequiredError*>(&e)) {
            const CLI::App& level = batch_cmd->parsed() ? *batch_cmd : app;
            if (const auto extra = level.remaining(); !extra.empty() && extra.front() != "--") {
                std::cerr << "unknown " << (&level == &app ? "command" : "batch command") << " '"
                          << printable(extra.front()) << "'\nRun with --help for more information.\n";
                return kUsage;
            }
        }
        const int rc = app.exit(e);
        return rc == 0 ? kOk : kUsage;
    }

    std::ostream& out = std::cout;
    try {
        const Config config = load_config(config_path);
        if (*init_cmd) {
            const int rc = init(config, out);
            if (rc == kOk) warn_unless_daemons_read_map(config, std::cerr);
            return rc;
        }
        if (*import_cmd) return import_csv(config, file, ImportOptions{batch, dry_run, prune, import_state, force}, out, std::cerr);
        if (*set_cmd) return set(config, address, set_state, target, batch, clear_override, at, out);
        if (*remove_cmd) return remove(config, address, out);
        if (*alias_cmd) return alias(config, address, address2, out);
        if (*unalias_cmd) return unalias(config, address, out);
        if (*get_cmd) return get(config, address, out);
        if (*route_cmd) return route(config, addresses, explain, out);
        if (*batch_list_cmd) return batch_list(config, out);
        if (*batch_set_cmd) return batch_set(config, address, state, at, dry_run, out);
        if (*batch_cancel_cmd) return batch_cancel(config, address, out);
        if (*list_cmd) return list(config, state_filter, batch, out);
        if (*export_cmd) return export_csv(config, out);
        if (*stats_cmd) return stats(config, json, out);
        if (*history_cmd) return history(config, history_query, out);
        if (*dump_cmd) return dump(config, out);
        if (*restore_cmd) return restore(config, file, replace, out);
        if (*digest_cmd) return digest(config, out);
        if (*commands_cmd)
            return commands(config, script_system == "gam" ? ScriptSystem::gam : ScriptSystem::exo, batch,
                            state_filter, out);
        if (*check_cmd) return check(config, config_path, postfix_dir, out, std::cerr);
        if (*sync_cmd) {
            SyncHooks hooks;
#ifdef COEXIST_HAVE_SERVICE_MANAGER
            hooks.ready = [] { notify_ready(); };
            hooks.stopping = [] { notify_stopping(); };
            // [directory] metrics_listen: the follower's metrics (design 13.6).
            std::unique_ptr<FollowerMetrics> metrics;
            if (follow && !config.directory.metrics_listen.empty()) {
                metrics = std::make_unique<FollowerMetrics>(config.map_path);
                try {
                    metrics->listen(config.directory.metrics_listen);
                } catch (const std::runtime_error& e) {  // a port taken: a configuration problem
                    std::cerr << "coexist-map: " << e.what() << '\n';
                    return kUsage;
                }
                FollowerMetrics& m = *metrics;
                hooks.applied = [&m](const directory::SyncCounts& c) {
                    m.applied({c.added, c.changed, c.removed, c.aliases_added, c.aliases_removed});
                };
                hooks.held = [&m](std::size_t n) { m.held(n); };
                hooks.retrying = [&m] { m.reconnect(); };
            }
#endif
            return sync(config, dry_run, force, follow, out, hooks);
        }
    } catch (const ConfigError& e) {
        std::cerr << "coexist-map: " << e.what() << '\n';
        return kUsage;
    } catch (const UsageError& e) {
        std::cerr << "coexist-map: " << e.what() << '\n';
        return kUsage;
    } catch (const directory::RemovalLimitExceeded& e) {
        std::cerr << "coexist-map: " << e.what() << '\n';
        return kDataError;
    } catch (const directory::DirectoryError& e) {
        std::cerr << "coexist-map: " << e.what() << unchanged() << '\n';
        return kDataError;
    } catch (const DataError& e) {
        std::cerr << "coexist-map: " << e.what() << unchanged() << '\n';
        return kDataError;
    } catch (const MapUnavailable& e) {
        std::cerr << "coexist-map: " << e.what() << '\n';
        return kMapUnavailable;
    } catch (const std::exception& e) {
        std::cerr << "coexist-map: " << e.what() << '\n';
        return kMapUnavailable;
    }
    return kUsage;
}
