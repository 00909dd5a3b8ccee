#include "sessions.hpp"

#include <optional>

#include <fmt/format.h>

#include "coexist/address.hpp"
#include "coexist/canonical_address.hpp"
#include "coexist/log_text.hpp"
#include "replies.hpp"

namespace coexist::policyd {

namespace {

// ", shadow=yes" and what the reply would have been, when shadow mode changed it.
// A socketmap reply as logged: without the space that ends an empty one ("NOTFOUND "), which
// would otherwise stand before the next field's comma.
std::string_view logged_reply(std::string_view reply) {
    while (!reply.empty() && reply.back() == ' ') reply.remove_suffix(1);
    return reply;
}

std::string shadow_fields(bool shadow, std::string_view reply, std::string_view would_reply) {
    if (!shadow) return {};
    if (reply == would_reply) return ", shadow=yes";
    return fmt::format(", shadow=yes, would_reply=\"{}\"", loggable_quoted(logged_reply(would_reply)));
}

void count(const SessionServices& services, std::string_view service, Action action) {
    if (services.count) services.count(service, action);
}

}  // namespace

ConnectionTally::ConnectionTally(const SessionServices& services, std::string_view protocol)
    : services_(services), protocol_(protocol) {
    if (services_.connections) services_.connections(protocol_, +1);
}

ConnectionTally::~ConnectionTally() {
    try {
        if (services_.connections) services_.connections(protocol_, -1);
    } catch (...) {
    }
}

// ---- policy -----------------------------------------------------------------------------------

void PolicySession::answer(const PolicyRequest& request, std::string& replies) {
    if (!policy_wants_decision(request)) {
        append_policy_reply(replies, kPolicyNoDecision);
        return;
    }
    // smtpd sends recipient= in Postfix's internal (unquoted) form (smtpd.c, extract_addr():
    // tok822_internalize), "john doe@contoso.com" for RCPT TO:<"john doe"@contoso.com>; route()
    // reads the external form every other caller gives, so quote it back first.
    const std::string external = external_form(request.recipient);  // also the log line's to=<>
    const auto recipient = parse_address(external);
    const RoutingDecision decision = recipient                   ? services_.route(*recipient)
                                     : services_.route_unreadable ? services_.route_unreadable(request.recipient)
                                                                  : RoutingDecision{Action::foreign, {}, std::string(kNotAnAddress)};
    count(services_, "policy", decision.action);
    const std::string_view would = policy_action(decision);
    // Shadow mode: neither a refusal nor a deferral (DUNNO is what every other decision gets).
    const std::string_view action = services_.shadow ? kPolicyNoDecision : would;
    // A DUNNO for a known user is the answer to almost every RCPT: logged only on request
    // (log_lookups), as a line per recipient would cost more than the decision itself.
    if (services_.log_lookups || policy_changes_mail(decision)) {
        // Postfix style: the queue id when smtpd has one (not at the first RCPT), else NOQUEUE;
        // the recipient in its external form, quoted as Postfix logs it: unquoted, a local part
        // such as "x, action=rewrite" would forge the fields after it.
        services_.log(fmt::format("{}: to=<{}>, {}, reply=\"{}\"{}",
                                  request.queue_id.empty() ? "NOQUEUE" : loggable(request.queue_id),
                                  loggable_bracketed(external), decision_log_fields(decision),
                                  loggable_quoted(action),
                                  shadow_fields(services_.shadow, action, would)));
    }
    append_policy_reply(replies, action);
}

bool PolicySession::consume(std::string_view input, std::string& replies) {
    while (!input.empty()) {
        const auto result = parser_.feed(input);
        input.remove_prefix(result.consumed);
        switch (result.status) {
        case PolicyRequestParser::Status::need_more:
            return true;
        case PolicyRequestParser::Status::error:
            return false;  // no reply: the protocol wants a disconnect
        case PolicyRequestParser::Status::complete:
            answer(parser_.request(), replies);
            break;
        }
    }
    return true;
}

// ---- socketmap --------------------------------------------------------------------------------

void SocketmapSession::answer(std::string_view payload) {
    reply_.clear();
    const auto query = split_socketmap_request(payload);
    if (!query) {
        // Framed correctly, so the stream is still in step: answer and keep the connection.
        services_.log(fmt::format("socketmap: request \"{}\" is not \"name key\", reply=\"PERM\"", loggable_quoted(payload)));
        reply_ = socketmap_perm("request is not \"name key\"");
        return;
    }
    const auto table = parse_table_name(query->table);
    if (!table) {
        // A Postfix configured with a name we don't serve: say so in its log, keep talking.
        services_.log(fmt::format("socketmap: unknown table \"{}\", reply=\"PERM\"", loggable_quoted(query->table)));
        reply_ = socketmap_perm(fmt::format("unknown table \"{}\"; this server has virtual, recipients and transport",
                                            loggable(query->table)));
        return;
    }
    // Postfix also asks a virtual_alias_maps socketmap for bare domains (virtual_alias_domains
    // defaults to $virtual_alias_maps) and a transport_maps one for "*": no addresses, route()
    // is not consulted and the answer is NOTFOUND. So is every key the one address parser
    // refuses (control bytes, unbalanced brackets, a domain that is not a host name) in the
    // tables that rewrite or route (virtual, transport): Postfix asks the external (quoted) form
    // first and the internal form only when that finds nothing (mail_addr_find.c, find_addr(),
    // MA_FORM_EXTERNAL_FIRST), and an internal form that is not an address in its own right
    // ("john doe@x" of a known user who stays) must get the NOTFOUND the first query had, not a
    // TEMP while unknown users of its domain are deferred.
    // The key is Postfix's reading after trivial-rewrite: no source route is stripped again.
    const auto recipient = parse_rewritten_address(query->key);
    // The recipients table says whether smtpd accepts the address at all: a key no parser reads
    // that names a managed domain (a local part over 1,024 bytes) is that domain's unknown user,
    // as the milter, the policy service and `coexist-map route` decide (route_unreadable):
    // passed in a relay domain, refused in a reject domain, deferred while the map holds nobody
    // of it. Postfix asks it the internal form only after NOTFOUND (an unknown user) for the
    // external one, which this answer repeats.
    std::optional<RoutingDecision> found;
    if (recipient) {
        found = services_.route(*recipient);
    } else if (*table == SocketmapTable::recipients && services_.route_unreadable) {
        found = services_.route_unreadable(query->key);
        if (found->action == Action::foreign) found.reset();
    }
    if (!found) {
        // Postfix's own probes (bare domains, parent domains, "*"): routine, never a decision.
        if (services_.log_lookups)
            services_.log(fmt::format("socketmap {}: key=<{}>, not an address, reply=\"NOTFOUND\"", to_string(*table),
                                      loggable_bracketed(query->key)));
        reply_ = kSocketmapNotFound;
        return;
    }
    const RoutingDecision& decision = *found;
    count(services_, to_string(*table), decision.action);
    append_socketmap_reply(reply_, *table, query->key, decision);
    // NOTFOUND for a user who stays where they are, OK from recipients: logged only on request
    // (log_lookups). Postfix asks two or three times per recipient, so a line each would cost
    // more than the lookups; the metrics count every one.
    const bool logged = services_.log_lookups || socketmap_changes_mail(*table, decision);
    // Shadow mode: Postfix gets what changes nothing; reply_ keeps what would have been sent.
    std::string reply = services_.shadow ? socketmap_shadow_reply(*table, decision) : std::string();
    const std::string_view sent = services_.shadow ? std::string_view(reply) : std::string_view(reply_);
    if (logged)
        services_.log(fmt::format("socketmap {}: to=<{}>, {}, reply=\"{}\"{}", to_string(*table),
                                  loggable_bracketed(query->key), decision_log_fields(decision),
                                  loggable_quoted(logged_reply(sent)), shadow_fields(services_.shadow, sent, reply_)));
    if (services_.shadow) reply_ = std::move(reply);
}

bool SocketmapSession::consume(std::string_view input, std::string& replies) {
    while (!input.empty()) {
        const auto result = decoder_.feed(input);
        input.remove_prefix(result.consumed);
        switch (result.status) {
        case NetstringDecoder::Status::need_more:
            return true;
        case NetstringDecoder::Status::error:
            // The framing is lost, so there is no next request to wait for: say why, then close.
            error_ = decoder_.error();
            append_netstring(replies, socketmap_perm(error_));
            return false;
        case NetstringDecoder::Status::complete:
            answer(decoder_.payload());
            append_netstring(replies, reply_);
            break;
        }
    }
    return true;
}

}  // namespace coexist::policyd
