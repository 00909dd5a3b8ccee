#include "check_command.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>
#include <ostream>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "coexist/accounts.hpp"
#include "coexist/address.hpp"
#include "coexist/canonical_address.hpp"
#include "coexist/map_store.hpp"
#include "coexist/user_key.hpp"
#include "coexist/preflight.hpp"
#include "coexist/route.hpp"
#include "commands.hpp"
#include "key_hash.hpp"
#include "postconf.hpp"

namespace coexist::tool {

namespace {

// The daemons to check as: one target per distinct run-as user (the usual single `coexist` user
// checks the map once). The sockets are checked apart, each under the name of the daemon that
// listens on it: a milter socket's missing group is no problem of coexist-policyd's.
struct DaemonTarget {
    std::string names;  // "coexist-milter", "coexist-milter and coexist-policyd"
    PreflightTarget target;  // the user and the map; no sockets
};

std::vector<DaemonTarget> daemon_targets(const Config& c) {
    std::vector<DaemonTarget> targets{{"coexist-milter", {c.milter.user, {}}}};
    if (c.policyd.user == c.milter.user) targets.front().names += " and coexist-policyd";
    else targets.push_back({"coexist-policyd", {c.policyd.user, {}}});
    return targets;
}

// Each daemon's listeners, by the daemon's name.
std::vector<std::pair<std::string, SocketConfig>> daemon_sockets(const Config& c) {
    return {{"coexist-milter", c.milter.socket},
            {"coexist-policyd", c.policyd.policy_socket},
            {"coexist-policyd", c.policyd.socketmap_socket}};
}

// A '#' after a main.cf value is part of the value: main.cf comments take a line of their own
// (postconf(5)), so "smtputf8_enable = yes # why" is a boolean Postfix refuses at start ("bad
// boolean configuration") and "recipient_delimiter = + # why" makes every one of those
// characters a delimiter. Says so and returns true; the caller then judges nothing else of it.
bool comment_in_value(const std::string& postfix_dir, std::string_view name, const std::string& value,
                      std::ostream& err) {
    // A yes/no setting has no '#' of its own anywhere ("no#off" too); in a list, one after a
    // blank starts what was meant as a comment.
    const bool yes_no = name == "smtputf8_enable" || name == "allow_percent_hack" || name == "swap_bangpath";
    const auto hash = value.find('#');
    if (hash == std::string::npos) return false;
    if (!yes_no && (hash == 0 || (value[hash - 1] != ' ' && value[hash - 1] != '\t'))) return false;
    err << fmt::format("coexist-map: warning: postfix {}: {} = {}: the '#' and what follows it are part of the value "
                       "(main.cf comments take a line of their own): Postfix refuses such a yes/no setting at start, "
                       "and reads any other with the comment in it; put the comment on its own line\n",
                       postfix_dir, name, value);
    return true;
}

// allow_percent_hack and swap_bangpath (both yes by default) turn user%contoso.com@localhost and
// contoso.com!user@localhost into user@contoso.com only when Postfix resolves the next hop,
// after the milter, the policy service and virtual_alias_maps have seen the recipient as
// written: a migrated user's mail would reach the old system (contrib/postfix/README.md).
// Called once smtputf8_enable could be read, so postconf and main.cf are there.
void check_address_rewriting(const std::string& postfix_dir, std::ostream& out, std::ostream& err) {
    const auto example = [](std::string_view name) {
        return name == "allow_percent_hack" ? "user%contoso.com@localhost" : "contoso.com!user@localhost";
    };
    // Postfix reads a boolean's "no" in any case (mail_conf_bool.c: strcasecmp).
    const auto is_no = [](const std::string& value) { return lowercase_ascii(value) == "no"; };
    for (const char* name : {"allow_percent_hack", "swap_bangpath"}) {
        const auto setting = read_postfix_setting(postfix_dir, name);
        if (!setting.value || comment_in_value(postfix_dir, name, *setting.value, err)) continue;
        if (is_no(*setting.value)) {
            out << fmt::format("postfix {}: {} = no\n", postfix_dir, name);
            continue;
        }
        err << fmt::format("coexist-map: warning: postfix {}: {} = {}: Postfix then routes {} as user@contoso.com "
                           "after coexist has looked at it as written, to the old system even for a migrated "
                           "user; set {} = no\n",
                           postfix_dir, name, *setting.value, example(name), name);
    }
    // The same settings given to one service in master.cf (-o), e.g. to trivial-rewrite, which
    // applies them: main.cf's "no" does not hold there.
    std::string problem;
    const auto overrides = read_master_overrides(postfix_dir, problem);
    if (!overrides) {
        out << fmt::format("postfix {}: master.cf overrides not checked: {}\n", postfix_dir, problem);
        return;
    }
    for (const MasterOverride& o : *overrides)
        if ((o.name == "allow_percent_hack" || o.name == "swap_bangpath") && !is_no(o.value))
            err << fmt::format("coexist-map: warning: postfix {}: master.cf gives {} -o {}={}: Postfix then "
                               "routes {} as user@contoso.com after coexist has looked at it as written; remove "
                               "the override or make it {}=no\n",
                               postfix_dir, o.service, o.name, o.value, example(o.name), o.name);
}

// Postfix's recipient_delimiter against coexist's [routing] one. Postfix reads ann-news@ as ann's
// with "-"; coexist, with "+", looks it up whole and finds nobody: coexist-milter then relays a
// migrated ann's extension mail to the old system, and a reject domain's policy check refuses
// what Postfix would deliver. An empty Postfix delimiter cuts nothing, so coexist's own
// cutting (at "+" by default) then only finds the user an extension address belongs to.
void check_delimiter(const Config& c, const std::string& postfix_dir, std::ostream& out, std::ostream& err) {
    const auto setting = read_postfix_setting(postfix_dir, "recipient_delimiter");
    if (!setting.value || comment_in_value(postfix_dir, "recipient_delimiter", *setting.value, err)) return;
    const auto chars = [](std::string_view v) { return std::set<char>(v.begin(), v.end()); };
    if (setting.value->empty() || chars(*setting.value) == chars(c.recipient_delimiter)) {
        out << fmt::format("postfix {}: recipient_delimiter = {}\n", postfix_dir, *setting.value);
        return;
    }
    const std::string example = fmt::format("ann{}news@contoso.com", setting.value->front());
    err << fmt::format("coexist-map: warning: postfix {}: recipient_delimiter = {}, but coexist's [routing] "
                       "recipient_delimiter = {}: Postfix reads {} as ann's address with an extension, coexist as "
                       "another user (an unknown one, relayed unchanged or refused); set [routing] "
                       "recipient_delimiter = {} in coexist.ini\n",
                       postfix_dir, *setting.value, c.recipient_delimiter.empty() ? "(empty)" : c.recipient_delimiter,
                       example, *setting.value);
}

// The entries of a Postfix domain list ("a.com, b.com c.com", postconf(5): separated by commas
// or white space), lowercased, a trailing dot dropped.
std::vector<std::string> postfix_list_entries(std::string_view rest) {
    std::vector<std::string> entries;
    while (!rest.empty()) {
        const auto start = rest.find_first_not_of(", \t\r\n");
        if (start == std::string_view::npos) break;
        rest.remove_prefix(start);
        const auto end = rest.find_first_of(", \t\r\n");
        std::string entry = lowercase_ascii(rest.substr(0, end));
        rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
        if (!entry.empty() && entry.back() == '.') entry.pop_back();
        if (!entry.empty()) entries.push_back(std::move(entry));
    }
    return entries;
}

std::set<std::string> managed_names(const Config& c) {
    std::set<std::string> managed;
    for (const auto& d : c.domains) {
        managed.insert(d.name);
        for (const auto& a : d.aliases) managed.insert(a);
    }
    return managed;
}

// Whether a domain list's entries (postfix_list_entries()) match `domain`, as Postfix's
// match_list(3) does: the first entry that matches decides, "!entry" excluding; an entry
// matches by name, or as a parent: ".parent" always, "parent" when `parent_matches` (the list
// is named in parent_domain_matches_subdomains, as relay_domains is by default).
bool domain_listed(const std::vector<std::string>& entries, std::string_view domain, bool parent_matches) {
    for (const auto& entry : entries) {
        const bool excluded = entry.front() == '!';
        const std::string_view e = excluded ? std::string_view(entry).substr(1) : std::string_view(entry);
        if (e.empty()) continue;
        const bool dotted = e.front() == '.';
        const std::string_view parent = dotted ? e.substr(1) : e;
        if (e == domain || ((dotted || parent_matches) && domain.size() > parent.size() && domain.ends_with(parent) &&
                            domain[domain.size() - parent.size() - 1] == '.'))
            return !excluded;
    }
    return false;
}

// Whether Postfix lets a plain "parent" entry of relay_domains match its subdomains: the
// setting parent_domain_matches_subdomains lists relay_domains (postconf(5); Postfix's default
// does). Unreadable: the default is assumed.
bool relay_domains_match_subdomains(const std::string& postfix_dir, std::ostream& err) {
    const auto setting = read_postfix_setting(postfix_dir, "parent_domain_matches_subdomains");
    if (!setting.value) return true;
    // Read as Postfix reads it, a comment's words as entries; but said.
    (void)comment_in_value(postfix_dir, "parent_domain_matches_subdomains", *setting.value, err);
    const auto names = postfix_list_entries(*setting.value);
    return std::find(names.begin(), names.end(), "relay_domains") != names.end();
}

// Every managed domain and alias must be a relay domain (contrib/postfix/README.md, "Common to
// all ways"): missing from relay_domains, its mail from outside is refused ("Relay access
// denied") and its mail from mynetworks (the old system's outbound) goes out by
// default_transport to the domain's MX, which is this relay or the old system. A listed parent
// domain covers it (relay_domains is in parent_domain_matches_subdomains by default), as does
// ".parent". A table in the list is not opened, so then nothing is said.
void check_relay_domains(const Config& c, const std::string& postfix_dir, std::ostream& out, std::ostream& err) {
    const auto setting = read_postfix_setting(postfix_dir, "relay_domains");
    if (!setting.value || comment_in_value(postfix_dir, "relay_domains", *setting.value, err)) return;
    const auto entries = postfix_list_entries(*setting.value);
    for (const auto& e : entries)
        if (e.find(':') != std::string::npos || e.front() == '/') return;  // a table
    const bool parent_matches = relay_domains_match_subdomains(postfix_dir, err);
    for (const auto& domain : managed_names(c))
        if (!domain_listed(entries, domain, parent_matches))
            err << fmt::format("coexist-map: warning: postfix {}: relay_domains does not list {}, a domain coexist "
                               "manages: Postfix refuses its mail from outside (Relay access denied) and sends the "
                               "old system's mail for it out by default_transport; add it to relay_domains\n",
                               postfix_dir, domain);
    // Where the routing addresses go, for the admin to read: a misspelt routing_domain
    // (o365.contoso.co) is no relay domain and goes out to whoever holds that name, which no
    // check here can tell from the tenant's contoso.onmicrosoft.com (also no relay domain).
    std::set<std::string> said;
    for (const auto& d : c.domains)
        if (said.insert(d.routing_domain).second)
            out << fmt::format("postfix {}: routing_domain {} {}\n", postfix_dir, d.routing_domain,
                               domain_listed(entries, d.routing_domain, parent_matches)
                                   ? "is a relay domain (relay_transport, or transport_maps)"
                                   : "is not a relay domain: mail to it goes by default_transport to its MX (is it "
                                     "spelt right?)");
}

// A managed domain (or one of its aliases) must stay a relay domain (contrib/postfix/README.md,
// "Common to all ways"). Listed in virtual_alias_domains, Postfix refuses every address of it
// that virtual_alias_maps does not rewrite ("User unknown in virtual alias table": every user
// still on the old system); in mydestination or virtual_mailbox_domains it delivers the domain
// itself instead of relaying it. Only names written in the list are compared: a table in it
// ("hash:/etc/postfix/vdomains") is not opened.
void check_domain_classes(const Config& c, const std::string& postfix_dir, std::ostream& err) {
    const std::set<std::string> managed = managed_names(c);
    for (const char* name : {"virtual_alias_domains", "mydestination", "virtual_mailbox_domains"}) {
        const auto setting = read_postfix_setting(postfix_dir, name);
        if (!setting.value) continue;
        for (const auto& entry : postfix_list_entries(*setting.value)) {
            if (!managed.count(entry)) continue;
            err << fmt::format("coexist-map: warning: postfix {}: {} lists {}, a domain coexist manages: Postfix then "
                               "{} instead of relaying it; keep it in relay_domains only{}\n",
                               postfix_dir, name, entry,
                               std::string_view(name) == "virtual_alias_domains"
                                   ? "refuses every address of it that virtual_alias_maps does not rewrite (every "
                                     "user still on the old system: \"User unknown in virtual alias table\")"
                                   : "delivers its mail on this host",
                               std::string_view(name) == "virtual_alias_domains" ? " (virtual_alias_domains =)" : "");
        }
    }
}

// Targets the map holds whose domain is no host name mail can be sent to (target_host_problem()):
// set before the rule, or restored from such a dump. route() still sends their mail there, and
// import refuses them, so an export of the map would not read back: said here, before either.
void check_stored_targets(const Config& c, std::ostream& err) {
    MapStore store(c.map_path, c.map_size, MapStore::Mode::read_only);
    std::size_t found = 0;
    store.read([&](MapTxn& t) {
        t.for_each_user([&](std::string_view key, const UserRecord& r) {
            if (r.target.empty()) return true;
            if (const auto why = target_host_problem(r.target); why && ++found <= 10)
                err << fmt::format("coexist-map: warning: {} has the target {}, no host name mail can be sent to "
                                   "({}): its mail goes nowhere once it is routed; give it another (coexist-map set "
                                   "ADDRESS STATE --target ...)\n",
                                   key, r.target, *why);
            return true;
        });
    });
    if (found > 10) err << fmt::format("coexist-map: warning: {} targets in all are no host names\n", found);
}

// Two users with one routing address are one mailbox on the new system: ann@contoso.com and
// ann@fabrikam.com when both domains have routing_domain = contoso.onmicrosoft.com (the tenant's
// own domain, a natural choice), or two users given one target. Once migrated, each gets the
// other's mail. Every user counts, whatever its state: a source user is routed so once moved.
// Two passes over the users: the first keeps a 16-byte hash a user (a table kept under 70%
// full: 32 MB for a million users), the second only the users of the addresses given twice.
void check_routing_addresses(const Config& c, std::ostream& err) {
    std::map<std::string, std::vector<std::string>> domains_by_routing;
    for (const auto& d : c.domains) domains_by_routing[d.routing_domain].push_back(d.name);
    for (const auto& [routing, names] : domains_by_routing)
        if (names.size() > 1)
            err << fmt::format("coexist-map: warning: [domain {}] have one routing_domain, {}: users with one local "
                               "part in more than one get one routing address (below if the map has such)\n",
                               fmt::join(names, "], [domain "), routing);
    MapStore store(c.map_path, c.map_size, MapStore::Mode::read_only);
    std::map<std::string, std::vector<std::string>> shared;  // routing address (case folded) -> its users
    // Compared case folded: the new system (Exchange Online, any SMTP mailbox) delivers
    // DAVE@contoso.onmicrosoft.com and dave@contoso.onmicrosoft.com to one mailbox, and an
    // explicit target keeps the case the admin typed.
    const auto folded_routing_address = [&](std::string_view key, const UserRecord& r) -> std::optional<std::string> {
        auto address = routing_address(c, key, r);
        if (address) address = fold_case(*address);
        return address;
    };
    store.read([&](MapTxn& t) {
        directory::Hash128Set seen, twice;
        t.for_each_user([&](std::string_view key, const UserRecord& r) {
            if (const auto address = folded_routing_address(key, r)) {
                const auto h = directory::hash128(*address);
                if (!seen.insert(h)) twice.insert(h);
            }
            return true;
        });
        if (twice.size() == 0) return;
        t.for_each_user([&](std::string_view key, const UserRecord& r) {
            if (const auto address = folded_routing_address(key, r);
                address && twice.contains(directory::hash128(*address)))
                shared[*address].emplace_back(key);
            return true;
        });
    });
    std::size_t shown = 0;
    for (const auto& [address, users] : shared) {
        if (users.size() < 2) continue;  // a hash collision, not an address given twice
        if (++shown > 10) continue;
        err << fmt::format("coexist-map: warning: {} all have the routing address {}: the new system delivers their "
                           "mail to one mailbox; give each its own (coexist-map set ADDRESS STATE --target ...)\n",
                           fmt::join(users, ", "), address);
    }
    if (shown > 10)
        err << fmt::format("coexist-map: warning: {} routing addresses in all are given to more than one user\n", shown);
}

// smtputf8_enable decides how Postfix folds the case of a non-ASCII lookup key (design 13.2):
// with it off, Postfix lowercases byte by byte what coexist folds with ICU, so the socketmap
// tables may be asked for a key in another form than the map holds.
void check_postfix(const Config& c, const std::string& postfix_dir, std::ostream& out, std::ostream& err) {
    const auto smtputf8 = read_postfix_setting(postfix_dir, "smtputf8_enable");
    if (!smtputf8.value) {
        out << fmt::format("postfix {}: not checked: {}\n", postfix_dir, smtputf8.problem);
        return;
    }
    check_address_rewriting(postfix_dir, out, err);
    check_delimiter(c, postfix_dir, out, err);
    check_domain_classes(c, postfix_dir, err);
    check_relay_domains(c, postfix_dir, out, err);
    if (comment_in_value(postfix_dir, "smtputf8_enable", *smtputf8.value, err)) return;
    if (*smtputf8.value == "yes") {
        out << fmt::format("postfix {}: smtputf8_enable = yes\n", postfix_dir);
        return;
    }
    err << fmt::format("coexist-map: warning: postfix {}: smtputf8_enable = {}: Postfix then lowercases "
                       "non-ASCII addresses byte by byte, while the map keeps them folded as Postfix does "
                       "with SMTPUTF8 on; set smtputf8_enable = yes\n",
                       postfix_dir, *smtputf8.value);
}

}  // namespace

// find_group() for a hint: nullopt also when the lookup itself fails.
std::optional<SystemGroup> find_group_noexcept(const std::string& name) noexcept {
    try {
        return find_group(name);
    } catch (...) {
        return std::nullopt;
    }
}

void warn_unless_daemons_read_map(const Config& c, std::ostream& err) {
    if (::geteuid() != 0) return;
    std::vector<std::string> groups;
    for (const auto& [names, target] : daemon_targets(c)) {
        err.flush();
        const auto problems = preflight_problems(c, target);
        for (const auto& p : problems) err << fmt::format("coexist-map: warning: {}: {}\n", names, p);
        // The hint below is about the map; an unreadable coexist.ini says its own.
        if (std::none_of(problems.begin(), problems.end(), [](const std::string& p) { return p.rfind("map ", 0) == 0; }))
            continue;
        // The hint names the group of the user that failed (user = nobody: nogroup, not coexist).
        const std::string group = primary_group_name(target.user);
        if (std::find(groups.begin(), groups.end(), group) == groups.end()) groups.push_back(group);
    }
    if (groups.empty()) return;
    const std::string group = groups.size() == 1 ? groups.front() : "GROUP";
    // init gives the map the daemons' group itself: when it has it, with group read and search,
    // what stops them is a directory above (a 0700 parent), which no chgrp of the map mends.
    struct stat st {};
    const auto g = groups.size() == 1 ? find_group_noexcept(group) : std::nullopt;
    if (g && ::stat(c.map_path.c_str(), &st) == 0 && st.st_gid == g->gid && (st.st_mode & 0050) == 0050) {
        err << fmt::format("coexist-map: warning: started so, the daemons would defer every managed recipient: "
                           "{} has their group {} and mode {:04o} already, so a directory above it does not let "
                           "them through: each one needs search permission (x) for them\n",
                           c.map_path, group, static_cast<unsigned>(st.st_mode & 07777));
        return;
    }
    err << fmt::format("coexist-map: warning: started so, the daemons would defer every managed recipient: "
                       "give {} their group, mode 2750 (e.g. chgrp {} {}; chmod 2750 {}; see "
                       "coexist-map(8), FILES){}\n",
                       c.map_path, group, c.map_path, c.map_path,
                       groups.size() == 1 ? "" : fmt::format("; the daemons' users have different groups ({}): "
                                                             "give them one", fmt::join(groups, ", ")));
}

int check(const Config& c, const std::string& config_path, const std::string& postfix_dir, std::ostream& out,
          std::ostream& err) {
    out << fmt::format("configuration {}: valid\n", config_path);
    bool failed = false;
    const bool root = ::geteuid() == 0;
    for (const auto& [names, target] : daemon_targets(c)) {
        // Flushed first: the check forks, and the child must not write our buffered output again.
        out.flush();
        err.flush();
        const auto problems = preflight_problems(c, target);
        for (const auto& p : problems) err << fmt::format("coexist-map: {}: {}\n", names, p);
        if (!problems.empty()) {
            failed = true;
            continue;
        }
        out << fmt::format("{}: user {} exists, map {} readable as {}\n", names, target.user, c.map_path,
                           root ? target.user : std::string("the current user (not root)"));
    }
    for (const auto& [name, socket] : daemon_sockets(c)) {
        for (const auto& p : socket_problems(socket)) {
            err << fmt::format("coexist-map: {}: {}\n", name, p);
            failed = true;
        }
        for (const auto& w : socket_warnings(socket)) err << fmt::format("coexist-map: warning: {}: {}\n", name, w);
    }
    if (!failed) {
        check_routing_addresses(c, err);
        check_stored_targets(c, err);
    }
    check_postfix(c, postfix_dir, out, err);
    return failed ? kMapUnavailable : kOk;
}

}  // namespace coexist::tool
