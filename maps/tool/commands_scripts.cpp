#include "commands_scripts.hpp"

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <fmt/format.h>
#include <map>
#include <ostream>
#include <set>
#include <vector>

#include "coexist/log_text.hpp"
#include "coexist/map_store.hpp"
#include "coexist/route.hpp"
#include "coexist/utc_time.hpp"
#include "commands.hpp"

namespace coexist::tool {

namespace {

// One user the script is about, with what route() would send its mail to.
struct ScriptUser {
    std::string key;                         // the map's key: the user's primary address
    State state = State::source;             // the state it is heading to: a pending change, else the effective one
    std::int64_t scheduled_at = 0;           // non-zero: `state` is a scheduled change for that time
    bool schedule_passed = false;            // scheduled_at is not after the script's time: in effect
    std::optional<std::string> routing;      // nullopt: the domain is no longer managed
    bool explicit_target = false;            // routing comes from the record's target
};

// The time the script says it was made: SOURCE_DATE_EPOCH (reproducible-builds.org's
// convention, so a test or a review can compare two runs byte for byte) when it is a plain
// number of seconds, else now.
std::int64_t generated_at() {
    if (const char* env = std::getenv("SOURCE_DATE_EPOCH"); env && *env) {
        std::int64_t value = 0;
        const std::string_view text(env);
        const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec == std::errc() && end == text.data() + text.size() && value >= 0) return value;
    }
    return static_cast<std::int64_t>(std::time(nullptr));
}

// A local part in quotes ("john doe"@...) is Postfix's external form of one that needs them.
bool quoted_local_part(std::string_view address) { return !address.empty() && address.front() == '"'; }

std::vector<ScriptUser> select_users(const Config& c, const std::optional<std::string>& batch,
                                     const std::optional<State>& state) {
    require_batch_name(batch);
    MapStore store(c.map_path, c.map_size, MapStore::Mode::read_only);
    std::vector<ScriptUser> users;
    bool batch_seen = false;
    std::size_t skipped_source = 0;
    const std::int64_t now = generated_at();  // the time the header states, once for every user
    store.read([&](MapTxn& t) {
        t.for_each_user([&](std::string_view key, const UserRecord& r) {
            if (batch && r.batch != *batch) return true;
            batch_seen = true;
            // A batch scheduled for the weekend is scripted for the state it is heading to: the
            // scripts are prepared before the instant, and run at it.
            const State effective = r.pending_state.value_or(r.effective_state());
            if (state && effective != *state) return true;
            // Without --state, the users on (or going back to) the source are left out: their
            // undo switches Gmail forwarding off, which would also end a forward a user set up
            // herself. A rollback asks for it by name (--state source).
            if (!state && effective == State::source) {
                ++skipped_source;
                return true;
            }
            const std::int64_t scheduled_at = r.pending_state ? r.pending_at : 0;
            users.push_back({std::string(key), effective, scheduled_at, scheduled_at != 0 && scheduled_at <= now,
                             routing_address(c, key, r), !r.target.empty()});
            return true;
        });
    });
    if (batch && !batch_seen)
        throw DataError(fmt::format("unknown batch '{}': no user of the map is in it", printable(*batch)));
    if (users.empty()) {
        const std::string of_batch = batch ? fmt::format(" of batch '{}'", printable(*batch)) : std::string();
        if (state) throw DataError(fmt::format("no user{} is in state {}", of_batch, to_string(*state)));
        if (skipped_source)
            throw DataError(fmt::format("every user{} is on source: '--state source' prints the undo (a rollback)",
                                        of_batch));
        throw DataError("the map has no users");
    }
    return users;
}

void write_header(std::ostream& out, std::string_view title, const std::optional<std::string>& batch,
                  const std::optional<State>& state, const std::vector<ScriptUser>& users) {
    std::map<State, std::size_t> by_state;
    for (const auto& u : users) ++by_state[u.state];
    out << fmt::format("# {}\n", title);
    out << fmt::format("# batch: {}; state: {}; users: {} (migrated {}, dual {}, source {}); generated: {}\n",
                       batch ? printable(*batch) : std::string("(all)"),
                       state ? std::string(to_string(*state)) : std::string("migrated and dual"), users.size(),
                       by_state[State::migrated], by_state[State::dual], by_state[State::source],
                       utc_timestamp(generated_at()));
    std::map<std::pair<std::int64_t, bool>, std::size_t> scheduled;  // (time, passed) -> users
    for (const auto& u : users)
        if (u.scheduled_at) ++scheduled[{u.scheduled_at, u.schedule_passed}];
    for (const auto& [when, n] : scheduled) {
        const auto& [at, passed] = when;
        if (passed)  // a weekend's script made after the instant: nothing to wait for
            out << fmt::format("# SCHEDULED: {} of these users changed at {}, before this script was made: the\n"
                               "# relays already route them to the new system, so run it now.\n",
                               n, utc_timestamp(at));
        else
            out << fmt::format("# SCHEDULED: {} of these users change at {}: run this script at that time, not before\n"
                               "# (Gmail forwards at once; the relays route them to the new system only from then on).\n",
                               n, utc_timestamp(at));
    }
}

// The comment line before a user's commands. Addresses in comments go through printable(): a
// comment is not quoted, so nothing but plain ASCII may reach it.
std::string user_comment(const ScriptUser& u, std::string_view note = {}) {
    return fmt::format("# {}: {}{}{}\n", printable(u.key), to_string(u.state),
                       u.scheduled_at ? fmt::format(" (scheduled for {}{})", utc_timestamp(u.scheduled_at),
                                                    u.schedule_passed ? ", in effect" : "")
                                      : std::string(),
                       note);
}

// Google side (GAM7 / GAMADV-XTD3 wiki, "Users - Gmail - Forwarding"):
//   gam user U add forwardingaddress A     (A must be a forwarding address before it is used)
//   gam user U forward on archive|keep A   (the disposition of Gmail's own copy)
//   gam user U forward off
//   gam user U delete forwardingaddress A
void write_gam(std::ostream& out, const std::vector<ScriptUser>& users) {
    out << "# migrated: Gmail forwards to the routing address and archives its own copy (kept, out of the\n"
           "# inbox). dual: Gmail forwards and keeps its copy in the inbox. source: the forward is switched\n"
           "# off and the forwarding address removed. Each command stands alone: one that fails (a user\n"
           "# already done) does not stop the others. Review, then run with sh.\n";
    for (const auto& u : users) {
        out << '\n';
        if (!u.routing) {
            out << user_comment(u, ": SKIPPED, its domain is no longer a managed domain in the configuration");
            continue;
        }
        // Google account names are letters, digits and . - _ ' only; and GAM splits an address list
        // at commas, which only a quoted local part can carry: never hand GAM such an address.
        if (quoted_local_part(u.key) || quoted_local_part(*u.routing)) {
            out << user_comment(u, fmt::format(": SKIPPED, a quoted local part ({}) is no Google address",
                                               printable(*u.routing)));
            continue;
        }
        const std::string user = sh_quote(u.key), routing = sh_quote(*u.routing);
        out << user_comment(u);
        switch (u.state) {
            case State::migrated:
            case State::dual:
                out << fmt::format("gam user {} add forwardingaddress {}\n", user, routing);
                out << fmt::format("gam user {} forward on {} {}\n", user,
                                   u.state == State::dual ? "keep" : "archive", routing);
                break;
            case State::source:
                out << fmt::format("gam user {} forward off\n", user);
                out << fmt::format("gam user {} delete forwardingaddress {}\n", user, routing);
                break;
        }
    }
}

// Exchange Online side (Set-Mailbox, -EmailAddresses: "To add or remove specify proxy addresses
// without affecting other existing values, use @{Add=...; Remove=...}"; a lowercase smtp: prefix
// makes a secondary address).
void write_exo(std::ostream& out, const std::vector<ScriptUser>& users) {
    out << "# Run in Exchange Online PowerShell (after Connect-ExchangeOnline). migrated and dual: the\n"
           "# mailbox gets the routing address as a secondary (smtp:) proxy address, so mail Google\n"
           "# forwards there is delivered to it; the user needs its mailbox (a license) first. source: the\n"
           "# routing address is removed again. Each line stands alone: one that fails does not stop the\n"
           "# others. Review, then run.\n";
    for (const auto& u : users) {
        out << '\n';
        if (!u.routing) {
            out << user_comment(u, ": SKIPPED, its domain is no longer a managed domain in the configuration");
            continue;
        }
        const std::string identity = powershell_quote(u.key);
        const std::string proxy = powershell_quote("smtp:" + *u.routing);
        switch (u.state) {
            case State::migrated:
            case State::dual:
                out << user_comment(u);
                out << fmt::format("Set-Mailbox -Identity {} -EmailAddresses @{{Add={}}}\n", identity, proxy);
                break;
            case State::source:
                // An explicit target may be the address Exchange Online gave the mailbox itself
                // (user@tenant.onmicrosoft.com): removing it is not ours to do.
                if (u.explicit_target) {
                    out << user_comment(u, fmt::format(": {} is an explicit target, left in place",
                                                       printable(*u.routing)));
                    continue;
                }
                out << user_comment(u);
                out << fmt::format("Set-Mailbox -Identity {} -EmailAddresses @{{Remove={}}}\n", identity, proxy);
                break;
        }
    }
}

}  // namespace

std::string sh_quote(std::string_view text) {
    std::string quoted = "'";
    for (const char ch : text) {
        if (ch == '\'') quoted.append("'\\''");
        else quoted.push_back(ch);
    }
    quoted.push_back('\'');
    return quoted;
}

std::string powershell_quote(std::string_view text) {
    std::string quoted = "'";
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char ch = text[i];
        quoted.push_back(ch);
        if (ch == '\'') {
            quoted.push_back('\'');
            continue;
        }
        // U+2018..U+201B in UTF-8: E2 80 98..9B. Doubled whole, so PowerShell reads back the same.
        if (static_cast<unsigned char>(ch) == 0xE2 && i + 2 < text.size() &&
            static_cast<unsigned char>(text[i + 1]) == 0x80 && static_cast<unsigned char>(text[i + 2]) >= 0x98 &&
            static_cast<unsigned char>(text[i + 2]) <= 0x9B) {
            const std::string_view mark = text.substr(i, 3);
            quoted.append(mark.substr(1));
            quoted.append(mark);
            i += 2;
        }
    }
    quoted.push_back('\'');
    return quoted;
}

int commands(const Config& c, ScriptSystem system, const std::optional<std::string>& batch,
             const std::optional<std::string>& state, std::ostream& out) {
    std::optional<State> want;
    if (state) {
        want = parse_state(*state);
        if (!want) throw DataError(fmt::format("unknown state '{}' (expected source, migrated or dual)", printable(*state)));
    }
    const auto users = select_users(c, batch, want);
    if (system == ScriptSystem::gam) {
        out << "#!/bin/sh\n";
        write_header(out, "coexist-map commands gam: the Google Workspace side of coexist's routing (GAM7 or GAMADV-XTD3)",
                     batch, want, users);
        write_gam(out, users);
    } else {
        write_header(out, "coexist-map commands exo: the Exchange Online side of coexist's routing (PowerShell)", batch,
                     want, users);
        write_exo(out, users);
    }
    return kOk;
}

}  // namespace coexist::tool
