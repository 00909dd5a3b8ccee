#include "replies.hpp"

#include <fmt/format.h>

#include "coexist/log_text.hpp"

namespace coexist::policyd {

bool policy_wants_decision(const PolicyRequest& request) {
    return lowercase_ascii(request.protocol_state) == "rcpt" && !request.recipient.empty();
}

std::string_view policy_action(const RoutingDecision& decision) {
    switch (decision.action) {
    case Action::reject:
        // A numeric reply rather than "REJECT 5.1.1 ...": smtpd answers REJECT with
        // access_map_reject_code, 554 by default, while "User unknown" is 550 everywhere else in
        // Postfix (unknown_relay_recipient_reject_code). smtpd prefixes the text with
        // "<recipient>: Recipient address rejected:", so the reply names the address.
        return "550 5.1.1 User unknown";
    case Action::tempfail:
        // DEFER_IF_PERMIT, not DEFER: if a later restriction rejects the recipient anyway, the
        // client gets that permanent answer instead of retrying in vain. The reason (a path, an
        // LMDB error) goes to our log, not to the SMTP client.
        return "DEFER_IF_PERMIT 4.3.0 Temporary routing failure, try again later";
    case Action::foreign:
    case Action::relay:
    case Action::rewrite:
    case Action::dual:
    case Action::transport:
        // Rewriting is the job of the milter or the socketmap: a policy answer cannot change one
        // recipient (postfix-notes, Implications 1). Accepting is left to the restrictions that
        // follow (relay_recipient_maps, reject_unauth_destination).
        break;
    }
    return kPolicyNoDecision;
}

bool policy_changes_mail(const RoutingDecision& decision) { return policy_action(decision) != kPolicyNoDecision; }

std::string policy_reply(std::string_view action) {
    std::string out;
    append_policy_reply(out, action);
    return out;
}

void append_policy_reply(std::string& out, std::string_view action) {
    out += "action=";
    out += action;
    out += "\n\n";
}

std::optional<SocketmapTable> parse_table_name(std::string_view name) {
    if (name == "virtual") return SocketmapTable::virtual_alias;
    if (name == "recipients") return SocketmapTable::recipients;
    if (name == "transport") return SocketmapTable::transport;
    return std::nullopt;
}

std::string_view to_string(SocketmapTable table) {
    switch (table) {
    case SocketmapTable::virtual_alias: return "virtual";
    case SocketmapTable::recipients: return "recipients";
    case SocketmapTable::transport: return "transport";
    }
    return "?";
}

std::optional<SocketmapQuery> split_socketmap_request(std::string_view payload) {
    const auto space = payload.find(' ');
    if (space == std::string_view::npos || space == 0) return std::nullopt;
    return SocketmapQuery{payload.substr(0, space), payload.substr(space + 1)};
}

namespace {

void append_temporary_failure(std::string& out, const RoutingDecision& decision) {
    // Postfix logs the reason ("socketmap server ... error: reason") and defers: 451 4.3.0 at
    // RCPT, "4.6.0 Alias expansion error" in cleanup. Never NOTFOUND here: that would send a
    // migrated user's mail to the old system.
    out += "TEMP ";
    out += printable(decision.detail.empty() ? "routing failure" : decision.detail);
}

}  // namespace

std::string socketmap_reply(SocketmapTable table, std::string_view key, const RoutingDecision& decision) {
    std::string out;
    append_socketmap_reply(out, table, key, decision);
    return out;
}

void append_socketmap_reply(std::string& out, SocketmapTable table, std::string_view key,
                            const RoutingDecision& decision) {
    if (table == SocketmapTable::virtual_alias) {
        switch (decision.action) {
        case Action::rewrite:
            out += "OK ";
            out += decision.address;
            return;
        case Action::dual:
            // The key itself first, as asked: cleanup lets an address expand into itself once
            // (cleanup_map1n.c, "Allow an address to expand into itself once") and does not look
            // it up again, so the original recipient is kept and the routing address added.
            // The routing address is then looked up and gets NOTFOUND (a foreign domain).
            out += "OK ";
            out += key;
            out += ',';
            out += decision.address;
            return;
        case Action::tempfail:
            append_temporary_failure(out, decision);
            return;
        case Action::foreign:
        case Action::relay:
        case Action::reject:
        case Action::transport:  // the recipient stays: the transport table routes it
            break;
        }
        out += kSocketmapNotFound;
        return;
    }
    if (table == SocketmapTable::transport) {
        // transport_maps (design 11): the next hop of a migrated user of a transport-mode
        // domain; NOTFOUND for everyone else, so Postfix goes on to its own transport for the
        // domain (Google). trivial-rewrite also asks for the bare domain, parent domains and
        // "*" (transport(5), TABLE SEARCH ORDER): no address, so never a route() answer.
        switch (decision.action) {
        case Action::transport:
            out += "OK ";
            out += decision.address;
            return;
        case Action::tempfail:
            // The lookup error defers the message in the queue manager (trivial-rewrite's
            // "transport table lookup failure"); it is retried, never misrouted.
            append_temporary_failure(out, decision);
            return;
        case Action::foreign:
        case Action::relay:
        case Action::rewrite:
        case Action::dual:
        case Action::reject:
            break;
        }
        out += kSocketmapNotFound;
        return;
    }
    switch (decision.action) {
    case Action::reject:
        out += kSocketmapNotFound;
        return;
    case Action::tempfail:
        append_temporary_failure(out, decision);
        return;
    case Action::foreign:
    case Action::relay:
    case Action::rewrite:
    case Action::dual:
    case Action::transport:
        break;
    }
    // relay_recipient_maps only asks "is there an entry"; the action is there for postmap -q.
    out += "OK ";
    out += to_string(decision.action);
}

bool socketmap_changes_mail(SocketmapTable table, const RoutingDecision& decision) {
    switch (decision.action) {
    case Action::tempfail:
        return true;
    case Action::rewrite:
    case Action::dual:
        return table == SocketmapTable::virtual_alias;
    case Action::transport:
        return table == SocketmapTable::transport;
    case Action::reject:
        return table == SocketmapTable::recipients;
    case Action::foreign:
    case Action::relay:
        break;
    }
    return false;
}

std::string socketmap_shadow_reply(SocketmapTable table, const RoutingDecision& decision) {
    // virtual and transport: no rewrite, no copy, no next hop of our own, no deferral.
    if (table != SocketmapTable::recipients) return std::string(kSocketmapNotFound);
    if (decision.action == Action::reject || decision.action == Action::tempfail) return "OK shadow";
    return fmt::format("OK {}", to_string(decision.action));
}

std::string socketmap_perm(std::string_view reason) { return "PERM " + printable(reason); }

}  // namespace coexist::policyd
