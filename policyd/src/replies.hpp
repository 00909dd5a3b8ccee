// From a RoutingDecision to the words each protocol speaks (design section 2, the decision
// table). Pure functions: no I/O, no state.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "coexist/route.hpp"
#include "policy_request.hpp"

namespace coexist::policyd {

// ---- policy delegation (check_policy_service) -------------------------------------------------

// Only RCPT with a recipient is decided; every other state (CONNECT, MAIL, DATA, ...) is DUNNO.
bool policy_wants_decision(const PolicyRequest& request);

inline constexpr std::string_view kPolicyNoDecision = "DUNNO";

// The access(5) action for a decided RCPT: DUNNO, "550 5.1.1 ..." or "DEFER_IF_PERMIT 4.3.0 ...".
// A literal: the hot path copies it once, into the connection's reply buffer.
std::string_view policy_action(const RoutingDecision& decision);

// Whether the policy answer for `decision` changes what happens to the recipient (a refusal or
// a deferral): such decisions are always logged, the others only with [routing] log_lookups.
bool policy_changes_mail(const RoutingDecision& decision);

// "action=...\n\n"
std::string policy_reply(std::string_view action);
// The same, appended to `out` (a connection's reply buffer: no allocation once it has grown).
void append_policy_reply(std::string& out, std::string_view action);

// ---- socketmap (socketmap_table(5)) -----------------------------------------------------------

enum class SocketmapTable {
    virtual_alias,  // "virtual": for virtual_alias_maps, rewrite and dual
    recipients,     // "recipients": for relay_recipient_maps, who is accepted at RCPT
    transport,      // "transport": for transport_maps, the next hop of transport-mode users
};
std::optional<SocketmapTable> parse_table_name(std::string_view name);
std::string_view to_string(SocketmapTable table);

struct SocketmapQuery {
    std::string_view table;  // as sent; may be unknown
    std::string_view key;    // exactly as Postfix sent it, case preserved
};
// "NAME KEY": split at the first space. nullopt when there is no space or the name is empty.
std::optional<SocketmapQuery> split_socketmap_request(std::string_view payload);

inline constexpr std::string_view kSocketmapNotFound = "NOTFOUND ";

// The reply payload (without netstring framing) for `key` in `table`, decided by `decision`.
std::string socketmap_reply(SocketmapTable table, std::string_view key, const RoutingDecision& decision);
// The same, appended to `out`.
void append_socketmap_reply(std::string& out, SocketmapTable table, std::string_view key,
                            const RoutingDecision& decision);

// Whether the answer of `table` for `decision` changes where mail goes or whether it is
// accepted: a rewrite or copy (virtual), a next hop (transport), a refusal (recipients), a
// deferral (any table). Those are always logged; the rest (NOTFOUND for a user who stays, OK
// from recipients) only with [routing] log_lookups, since Postfix asks several times per
// recipient and the metrics count them anyway.
bool socketmap_changes_mail(SocketmapTable table, const RoutingDecision& decision);

// The reply in shadow mode ([routing] shadow = yes, design 13.6), the one that changes nothing:
// `virtual` and `transport` answer NOTFOUND (no rewrite, no copy, no next hop, no deferral);
// `recipients` answers OK for
// every address, "OK shadow" where it would have refused (reject) or deferred (tempfail).
std::string socketmap_shadow_reply(SocketmapTable table, const RoutingDecision& decision);

// A reply for a request we cannot answer (unknown table, malformed request).
std::string socketmap_perm(std::string_view reason);

}  // namespace coexist::policyd
