#include "sessions.hpp"

#include <fmt/format.h>

#include "coexist/canonical_address.hpp"
#include "coexist/log_text.hpp"
#include "replies.hpp"

namespace coexist::policyd {

namespace {

// ", new=<addr>" for the actions that have an address, plus the route's own explanation.
std::string decision_fields(const RoutingDecision& d) {
    std::string out = fmt::format("action={}", to_string(d.action));
    if (!d.address.empty()) out += fmt::format(", new=<{}>", printable(d.address));
    if (!d.detail.empty()) out += fmt::format(", detail=\"{}\"", printable(d.detail));
    return out;
}

}  // namespace

// ---- policy -----------------------------------------------------------------------------------

std::string PolicySession::answer(const PolicyRequest& request) {
    if (!policy_wants_decision(request)) return std::string(kPolicyNoDecision);
    // smtpd sends recipient= in Postfix's internal (unquoted) form (smtpd.c, extract_addr():
    // tok822_internalize), "john doe@contoso.com" for RCPT TO:<"john doe"@contoso.com>; route()
    // reads the external form every other caller gives, so quote it back first.
    const RoutingDecision decision = services_.route(external_form(request.recipient));
    std::string action = policy_action(decision);
    // Postfix style: the queue id when smtpd has one (not at the first RCPT), else NOQUEUE.
    services_.log(fmt::format("{}: to=<{}>, {}, reply={}",
                              request.queue_id.empty() ? "NOQUEUE" : printable(request.queue_id),
                              printable(request.recipient), decision_fields(decision), action));
    return action;
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
            replies += policy_reply(answer(parser_.request()));
            break;
        }
    }
    return true;
}

// ---- socketmap --------------------------------------------------------------------------------

std::string SocketmapSession::answer(std::string_view payload) {
    const auto query = split_socketmap_request(payload);
    if (!query) {
        // Framed correctly, so the stream is still in step: answer and keep the connection.
        services_.log(fmt::format("socketmap: request \"{}\" is not \"name key\", reply=PERM", printable(payload)));
        return socketmap_perm("request is not \"name key\"");
    }
    const auto table = parse_table_name(query->table);
    if (!table) {
        // A Postfix configured with a name we don't serve: say so in its log, keep talking.
        services_.log(fmt::format("socketmap: unknown table \"{}\", reply=PERM", printable(query->table)));
        return socketmap_perm(fmt::format("unknown table \"{}\"; this server has virtual, recipients and transport",
                                          printable(query->table)));
    }
    if (!is_address_key(query->key)) {
        services_.log(fmt::format("socketmap {}: key=<{}>, not an address, reply=NOTFOUND", to_string(*table),
                                  printable(query->key)));
        return std::string(kSocketmapNotFound);
    }
    const RoutingDecision decision = services_.route(query->key);
    std::string reply = socketmap_reply(*table, query->key, decision);
    services_.log(fmt::format("socketmap {}: to=<{}>, {}, reply={}", to_string(*table), printable(query->key),
                              decision_fields(decision), printable(reply)));
    return reply;
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
            replies += encode_netstring(socketmap_perm(error_));
            return false;
        case NetstringDecoder::Status::complete:
            replies += encode_netstring(answer(decoder_.payload()));
            break;
        }
    }
    return true;
}

}  // namespace coexist::policyd
