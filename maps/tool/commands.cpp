#include "commands.hpp"

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <fmt/format.h>
#include <iostream>
#include <limits>
#include <map>
#include <ostream>
#include <utility>
#include <variant>

#include "coexist/address.hpp"
#include "coexist/canonical_address.hpp"
#include "coexist/csv.hpp"
#include "coexist/log_text.hpp"
#include "coexist/map_reader.hpp"
#include "coexist/map_store.hpp"
#include "coexist/route.hpp"
#include "coexist/user_key.hpp"
#include "coexist/utc_time.hpp"

namespace coexist::tool {

namespace {

MapStore open_store(const Config& c, MapStore::Mode mode = MapStore::Mode::read_write) {
    return MapStore(c.map_path, c.map_size, mode);
}

ChangeContext context(std::string command) {
    return ChangeContext{current_user_name(), std::move(command), static_cast<std::int64_t>(std::time(nullptr))};
}

State state_or_throw(const std::string& s) {
    const auto st = parse_state(s);
    if (!st) throw DataError(fmt::format("unknown state '{}' (expected source, migrated or dual)", printable(s)));
    return *st;
}

std::string target_or_throw(const Config& c, const std::string& t) {
    auto r = admin_target(c, t);
    if (auto* e = std::get_if<KeyError>(&r)) throw DataError(e->reason);
    return std::get<std::string>(r);
}

}  // namespace

std::string user_key_or_throw(const Config& c, const std::string& address) {
    auto r = admin_user_key(c, address);
    if (auto* e = std::get_if<KeyError>(&r)) throw DataError(e->reason);
    return std::move(std::get<std::string>(r));
}

std::string checked_batch(const std::string& batch) {
    if (batch.size() > 64) throw DataError("batch name longer than 64 bytes");
    for (unsigned char ch : batch)
        if (ch < 0x20 || ch == 0x7f) throw DataError("batch name contains a control character");
    return batch;
}

std::string checked_batch_argument(const std::string& batch) {
    // A CSV cell is trimmed; "wave9 " from a command line would be a second batch beside
    // wave9, which batch set wave9 leaves behind.
    if (!batch.empty() && (batch.front() == ' ' || batch.back() == ' '))
        throw DataError(fmt::format("batch name '{}' starts or ends with a blank", loggable(batch)));
    return checked_batch(batch);
}

void require_batch_name(const std::string& batch) {
    if (batch.empty())
        throw DataError("an empty batch name: it would select every user without a batch ('coexist-map batch list' "
                        "shows the batches)");
}

std::string format_time(long long unix_time) { return utc_timestamp(unix_time); }

// The group the daemons run in (the primary group of [milter] user, else of [policyd] user):
// the map directory `init` creates belongs to it. nullopt when neither user exists here.
std::optional<gid_t> daemon_group(const Config& c) {
    for (const auto* name : {&c.milter.user, &c.policyd.user})
        if (auto u = find_user(*name)) return u->gid;
    return std::nullopt;
}

int init(const Config& c, std::ostream& out) {
    MapStore store(c.map_path, c.map_size, MapStore::Mode::create, daemon_group(c));
    std::size_t users = 0;
    store.read([&](MapTxn& t) { users = t.user_count(); });
    out << fmt::format("map {} ready ({} users)\n", c.map_path, users);
    return kOk;
}

int set(const Config& c, const std::string& address, const std::optional<std::string>& state,
        const std::optional<std::string>& target, const std::optional<std::string>& batch, bool clear_override,
        const std::optional<std::string>& at, std::ostream& out) {
    const std::string key = user_key_or_throw(c, address);
    if (!state && !clear_override) throw UsageError("set needs a STATE (source, migrated or dual) or --clear-override");
    if (state && clear_override) throw UsageError("give either a STATE or --clear-override, not both");
    if (at && clear_override) throw UsageError("--at schedules a STATE; --clear-override cannot be scheduled");
    const auto started = static_cast<std::int64_t>(std::time(nullptr));
    const std::optional<std::int64_t> when = at ? std::optional(scheduled_time_or_throw(*at, started)) : std::nullopt;
    const std::optional<State> new_state = state ? std::optional(state_or_throw(*state)) : std::nullopt;
    std::optional<std::string> new_target;
    if (target) new_target = target->empty() ? std::string() : target_or_throw(c, *target);
    std::optional<std::string> new_batch;
    if (batch) new_batch = checked_batch_argument(*batch);
    auto store = open_store(c);
    std::string old, now;
    store.write(context("set"), [&](MapTxn& t) {
        if (auto p = t.alias_primary(key))
            throw DataError(key + " is an alias of " + *p + ": set the primary address, or unalias it first");
        const auto existing = t.user(key);
        UserRecord record = existing.value_or(UserRecord{});
        old = existing ? std::string(to_string(existing->effective_state())) : "new";
        if (existing && existing->pending_state)
            old += fmt::format(" (pending {} at {})", to_string(*existing->pending_state),
                               format_time(existing->pending_at));
        if (when) {
            // A schedule changes nothing now: route() acts on it at its second (design 10).
            if (!existing)
                throw DataError(fmt::format("no such user: {} (add it first, e.g. 'coexist-map set {} source', "
                                            "then schedule its change)", key, key));
            record.pending_state = new_state;
            record.pending_at = *when;
            if (new_target) record.target = *new_target;
            if (new_batch) record.batch = *new_batch;
            now = fmt::format("{}, {} at {} ({})", to_string(record.effective_state()), to_string(*new_state),
                              format_time(*when), relative_time(*when, started));
            t.put_user(key, record, existing);
            return;
        }
        // A state set now replaces any schedule: the admin's latest word wins.
        record.pending_state.reset();
        record.pending_at = 0;
        if (existing && existing->owner == Owner::directory) {
            // The directory owns this user (design 13.1): the admin's state is an override
            // beside the directory's, which `sync` keeps and reports, never silently undoes.
            if (new_target && !c.directory.target_attribute.empty())
                throw DataError(fmt::format("{} is owned by the directory ({}): its target comes from {}", key,
                                            existing->dn, c.directory.target_attribute));
            if (new_batch && !c.directory.batch_attribute.empty())
                throw DataError(fmt::format("{} is owned by the directory ({}): its batch comes from {}", key,
                                            existing->dn, c.directory.batch_attribute));
            if (clear_override && !existing->override_state)
                throw DataError(fmt::format("{} has no override: it follows the directory ({})", key,
                                            to_string(existing->state)));
            if (clear_override) record.override_state.reset();
            else record.override_state = new_state == existing->state ? std::nullopt : new_state;
        } else {
            if (clear_override)
                throw DataError(fmt::format("{} is not owned by the directory: it has no override to clear", key));
            record.state = *new_state;
        }
        // Options not given keep what the user had: `set ann migrated` keeps her target.
        if (new_target) record.target = *new_target;
        if (new_batch) record.batch = *new_batch;
        now = std::string(to_string(record.effective_state()));
        if (record.owner == Owner::directory)
            now += record.override_state ? fmt::format(" (override; the directory says {})", to_string(record.state))
                                         : " (as the directory says)";
        // A changed target moves the user's mail elsewhere: say so, as the history does.
        const auto shown = [](const std::string& v) { return v.empty() ? std::string("(none)") : v; };
        if (existing && existing->target != record.target)
            now += fmt::format(", target {} -> {}", shown(existing->target), shown(record.target));
        if (existing && existing->batch != record.batch)
            now += fmt::format(", batch {} -> {}", shown(existing->batch), shown(record.batch));
        t.put_user(key, record);
    });
    out << fmt::format("{}: {} -> {}\n", key, old, now);
    return kOk;
}

// Refuses a hand change to what the directory owns (design 13.1): it would be undone by the
// next sync, so it is refused with the way to do it instead.
static void refuse_if_directory_owned(MapTxn& t, const std::string& key, std::string_view what) {
    const auto r = t.user(key);
    if (r && r->owner == Owner::directory)
        throw DataError(fmt::format("{} is owned by the directory ({}): {}", key, r->dn, what));
}

int remove(const Config& c, const std::string& address, std::ostream& out) {
    const std::string key = user_key_or_throw(c, address);
    auto store = open_store(c);
    std::optional<std::string> heir;
    store.write(context("remove"), [&](MapTxn& t) {
        heir.reset();  // the body runs again when the map grows
        refuse_if_directory_owned(t, key, "remove or filter it out there, or 'coexist-map set ADDRESS source' to override it");
        if (auto p = t.alias_primary(key))
            throw DataError(fmt::format("{} is an alias of {}: 'coexist-map unalias {}' removes it", key, *p, key));
        // An address a directory user lists as an alias goes to that user (design 13.1).
        if (!t.remove_user(key, [&](std::string_view, std::string_view primary) { heir = std::string(primary); }))
            throw DataError("no such user: " + key);
    });
    out << fmt::format("{}: removed\n", key);
    if (heir) out << fmt::format("{}: alias of {} (the directory lists it)\n", key, *heir);
    return kOk;
}

int alias(const Config& c, const std::string& alias_address, const std::string& primary_address, std::ostream& out) {
    const std::string alias = user_key_or_throw(c, alias_address);
    const std::string primary = user_key_or_throw(c, primary_address);
    if (alias == primary) throw DataError(alias + " cannot be an alias of itself");
    std::optional<std::string> moved_from;
    auto store = open_store(c);
    store.write(context("alias"), [&](MapTxn& t) {
        if (!t.user(primary)) throw DataError("no such user: " + primary);
        refuse_if_directory_owned(t, primary, "its aliases come from the directory's alias_attributes");
        if (t.user(alias)) throw DataError(alias + " is a user: remove it before making it an alias");
        // Taken from a directory user, it would go back only at the next full sync, and be
        // nobody's if this user were removed before that (as unalias refuses, design 13.1).
        if (const auto p = t.alias_primary(alias); p && *p != primary)
            if (const auto holder = t.user(*p); holder && holder->owner == Owner::directory)
                throw DataError(fmt::format("{} is an alias of {}, owned by the directory ({}): its aliases come "
                                            "from the directory's alias_attributes", alias, *p, holder->dn));
        moved_from = t.alias_primary(alias);
        if (moved_from == primary) moved_from.reset();
        t.put_alias(alias, primary);
    });
    // An alias taken from another user moves that user's mail: said, as the history records it.
    out << fmt::format("{}: alias of {}{}\n", alias, primary,
                       moved_from ? fmt::format(" (moved from {})", *moved_from) : std::string());
    return kOk;
}

int unalias(const Config& c, const std::string& alias_address, std::ostream& out) {
    const std::string alias = user_key_or_throw(c, alias_address);
    auto store = open_store(c);
    store.write(context("unalias"), [&](MapTxn& t) {
        if (auto p = t.alias_primary(alias))
            refuse_if_directory_owned(t, *p, "its aliases come from the directory's alias_attributes");
        if (!t.remove_alias(alias)) throw DataError("no such alias: " + alias);
    });
    out << fmt::format("{}: alias removed\n", alias);
    return kOk;
}

int get(const Config& c, const std::string& address, std::ostream& out) {
    const std::string key = user_key_or_throw(c, address);
    auto store = open_store(c, MapStore::Mode::read_only);
    bool found = false;
    store.read([&](MapTxn& t) {
        std::string primary = key;
        if (auto p = t.alias_primary(key)) {
            out << fmt::format("{}: alias of {}\n", key, *p);
            primary = *p;
        }
        const auto r = t.user(primary);
        if (!r) return;
        found = true;
        out << fmt::format("address: {}\nstate: {}\n", primary, to_string(r->effective_state()));
        if (r->owner == Owner::directory) {
            out << fmt::format("owner: directory ({})\n", r->dn);
            if (r->override_state)
                out << fmt::format("override: {} (the directory says {}; 'coexist-map set {} --clear-override' "
                                   "follows the directory again)\n",
                                   to_string(*r->override_state), to_string(r->state), primary);
        } else {
            out << "owner: admin\n";
        }
        if (r->pending_state) {
            const auto now = static_cast<std::int64_t>(std::time(nullptr));
            out << fmt::format("pending: {} at {} ({}{})\n", to_string(*r->pending_state), format_time(r->pending_at),
                               relative_time(r->pending_at, now),
                               r->pending_due(now) ? "; in effect, stored by the next write" : "");
        }
        out << fmt::format("target: {}\nbatch: {}\nchanged: {}\n", r->target.empty() ? "-" : r->target,
                           r->batch.empty() ? "-" : r->batch, format_time(r->changed));
        const auto aliases = t.aliases_of(primary);
        out << "aliases: " << (aliases.empty() ? "-" : fmt::format("{}", fmt::join(aliases, ";"))) << "\n";
    });
    if (!found) throw DataError("no such user or alias: " + key);
    return kOk;
}

int route(const Config& c, const std::vector<std::string>& addresses, bool explain, std::ostream& out) {
    // The very function and reader the daemons use.
    MapReader reader(c.map_path);
    bool invalid = false, tempfail = false;
    const auto answer = [&](const std::string& a) {
        const auto parsed = parse_address(a);
        if (!parsed) {
            // An error, not `foreign`: a typo would otherwise read as "not ours, untouched".
            out.flush();
            // A blank at either end is the one refusal the parser alone does not explain: the
            // daemons take a key as Postfix sends it, untrimmed, and so does route. A leading
            // space is what Postfix's internal form of a quoted local part looks like, so the
            // address the admin may have meant is that form, quoted. Shown loggable: a tab or
            // other control byte as '?', not invisible.
            std::string why;
            if (trim_blanks(a).size() != a.size()) {
                why = ": a space or tab at either end, as the daemons read it";
                if (a.front() == ' ') {
                    const std::string quoted = external_form(a);
                    if (parse_address(quoted)) why += fmt::format(" (quoted, it is {})", loggable(quoted));
                }
            }
            // What the daemons answer for this text all the same: an unknown user of the managed
            // domain it names (route.cpp, decide_unreadable()), else nothing of theirs. Written
            // in RCPT TO, Postfix reads it first (blanks and comments dropped, the percent hack
            // resolved) and asks for that reading, which coexist-milter routes too ({rcpt_addr}).
            const RoutingDecision d = coexist::route(c, reader, a);
            if (d.action != Action::foreign)
                why += fmt::format("; the daemons answer {} for it ({})", to_string(d.action), loggable(d.detail));
            if (a.find('@') != std::string::npos)
                why += "; in RCPT TO, Postfix reads a recipient first and every way routes what it reads: "
                       "route that address";
            std::cerr << fmt::format("coexist-map: route: '{}' is not an email address{}\n", loggable(a), why);
            invalid = true;
            return;
        }
        const auto now = static_cast<std::int64_t>(std::time(nullptr));
        const RouteExplanation e = explain ? explain_route(c, reader, a, now) : RouteExplanation{coexist::route(c, reader, *parsed), {}};
        const RoutingDecision& d = e.decision;
        out << a << ' ' << to_string(d.action);
        if (!d.address.empty()) out << ' ' << d.address;
        out << '\n';
        if (explain) {
            for (const auto& step : e.steps) out << "  " << step << '\n';
            if (!d.detail.empty()) out << "  => " << d.detail << '\n';
        }
        if (d.action == Action::tempfail) {
            tempfail = true;
            // Why, for the admin (stdout keeps its one line per address): flushed first so
            // the two read in order when both go to one terminal or pipe.
            out.flush();
            std::cerr << "coexist-map: " << a << ": " << d.detail << '\n';
        }
    };
    for (const auto& a : addresses) {
        if (a != "-") {
            answer(a);
            continue;
        }
        // One address a line; blank lines skipped, surrounding blanks and a CR trimmed. Lines
        // are bounded: one longer than an address can be is an error, not a buffer.
        // Read into a buffer of that bound, never a whole line of any length: a longer line
        // is skipped to its end.
        constexpr std::size_t kMaxLine = 4096;
        char buffer[kMaxLine + 2];
        const auto line_too_long = [&] {
            std::cerr << "coexist-map: route: a line of stdin is longer than " << kMaxLine << " bytes\n";
            invalid = true;
        };
        // A list saved by a Windows editor starts with a byte-order mark, which is no part of
        // its first address.
        bool first_line = true;
        for (;;) {
            std::cin.getline(buffer, sizeof buffer);
            const bool at_end = std::cin.eof();
            const auto extracted = static_cast<std::size_t>(std::cin.gcount());
            if (std::cin.fail() && !at_end && !std::cin.bad()) {  // sizeof buffer - 1 bytes and no newline yet
                std::cin.clear();
                std::cin.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
                line_too_long();
                if (std::cin.eof()) break;
                continue;
            }
            if (extracted == 0 && at_end) break;
            std::string line(buffer, at_end ? extracted : extracted - 1);  // less the newline
            if (std::exchange(first_line, false) && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);
            while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
            const auto first = line.find_first_not_of(" \t");
            if (first != std::string::npos) {
                if (line.size() > kMaxLine)
                    line_too_long();
                else
                    answer(line.substr(first));
            }
            if (at_end || std::cin.bad()) break;
        }
    }
    if (tempfail) return kMapUnavailable;
    return invalid ? kDataError : kOk;
}

int list(const Config& c, const std::optional<std::string>& state, const std::optional<std::string>& batch,
         std::ostream& out) {
    require_batch_name(batch);
    const std::optional<State> want = state ? std::optional(state_or_throw(*state)) : std::nullopt;
    auto store = open_store(c, MapStore::Mode::read_only);
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    bool batch_seen = false;
    store.read([&](MapTxn& t) {
        t.for_each_user([&](std::string_view key, const UserRecord& stored) {
            // A change whose time has come is the state (route() acts on it), stored or not yet.
            UserRecord r = stored;
            r.apply_due(now);
            if (batch && r.batch != *batch) return true;
            batch_seen = true;
            if (want && r.effective_state() != *want) return true;
            out << key << ' ' << to_string(r.effective_state());
            if (r.override_state) out << " override";
            if (r.owner == Owner::directory) out << " directory";
            if (!r.target.empty()) out << " target=" << r.target;
            if (!r.batch.empty()) out << " batch=" << r.batch;
            if (r.pending_state)
                out << " pending=" << to_string(*r.pending_state) << '@' << format_time(r.pending_at);
            out << '\n';
            return true;
        });
    });
    // A misspelt batch would otherwise list nothing and succeed, as a batch with no user in the
    // asked state does; batch set and scripts refuse it the same way.
    if (batch && !batch_seen)
        throw DataError(fmt::format("unknown batch '{}': no user of the map is in it", printable(*batch)));
    return kOk;
}

int export_csv(const Config& c, std::ostream& out) {
    auto store = open_store(c, MapStore::Mode::read_only);
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    store.read([&](MapTxn& t) {
        // The stored state beside the pending change (design 13.6), which import reads back. The
        // two pending columns are written only when the map holds a scheduled change, so the
        // file of a map without schedules is the five columns it always was.
        bool scheduled = false;
        t.for_each_user([&](std::string_view, const UserRecord& r) {
            scheduled = r.pending_state && !r.pending_due(now);
            return !scheduled;
        });
        out << (scheduled ? "address,state,target,batch,aliases,pending_state,pending_at\n"
                          : "address,state,target,batch,aliases\n");
        t.for_each_user([&](std::string_view key, const UserRecord& stored) {
            UserRecord r = stored;
            r.apply_due(now);  // a change route() already acts on is the state, not pending
            out << csv_field(key) << ',' << to_string(r.effective_state()) << ',' << csv_field(r.target) << ','
                << csv_field(r.batch) << ',' << csv_field(fmt::format("{}", fmt::join(t.aliases_of(key), ";")));
            if (scheduled)
                out << ',' << (r.pending_state ? to_string(*r.pending_state) : "") << ','
                    << (r.pending_state ? format_time(r.pending_at) : std::string());
            out << '\n';
            return true;
        });
    });
    return kOk;
}

}  // namespace coexist::tool
