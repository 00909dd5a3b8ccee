#include "replies.hpp"

#include <fmt/format.h>

#include "coexist/log_text.hpp"
#include "esmtp_params.hpp"

namespace coexist::milter {

namespace {

// Addresses in replies and logs: bounded, so one long RCPT cannot crowd out the rest.
constexpr std::size_t kMaxShownAddress = 300;

std::string bracketed(std::string_view as_received) {
    // fmt, not `"<" + std::string`: GCC 12 -O3 gives a false -Wrestrict for that form.
    return fmt::format("<{}>", strip_brackets(as_received).substr(0, kMaxShownAddress));
}

}  // namespace

std::string reply_safe(std::string_view text) {
    // The project's one sanitizer makes it printable ASCII; libmilter's reply is a format
    // string, so '%' is doubled on top, never splitting a pair at the bound.
    std::string out;
    for (const char c : printable(text, kMaxReplyText - 4)) {
        if (out.size() + (c == '%' ? 2 : 1) > kMaxReplyText) break;
        out += c == '%' ? "%%" : std::string(1, c);
    }
    return out;
}

Reply unknown_recipient_reply(std::string_view as_received, std::string_view detail) {
    const std::string why = detail.empty() ? "unknown user" : std::string(detail);
    return {"550", "5.1.1",
            reply_safe(bracketed(as_received) + ": Recipient address rejected: " + why)};
}

Reply lookup_failure_reply(std::string_view as_received) {
    return {"451", "4.3.0",
            reply_safe(bracketed(as_received) +
                       ": Recipient address rejected: temporary lookup failure, try again later")};
}

Reply message_tempfail_reply(std::string_view why) {
    return {"451", "4.3.0", reply_safe(fmt::format("Temporary failure in coexist routing: {}, try again later", why))};
}

Reply loop_reply(unsigned trace_count, unsigned loop_limit) {
    return {"554", "5.4.6",
            fmt::format("Mail forwarding loop: message already routed {} times by coexist (loop_limit {})",
                        trace_count, loop_limit)};
}

std::string logged_recipient(std::string_view as_received) {
    return fmt::format("to=<{}>", loggable_bracketed(strip_brackets(as_received), kMaxShownAddress));
}

std::string decision_log_line(std::string_view queue_id, std::string_view as_received,
                              const RoutingDecision& decision) {
    return fmt::format("{}: {}, {}", queue_id, logged_recipient(as_received), decision_log_fields(decision));
}

}  // namespace coexist::milter
