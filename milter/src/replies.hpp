// The SMTP replies the milter asks Postfix to send, and the log lines it writes. Text that
// comes from the network is made safe here: no control bytes, '%' doubled for libmilter,
// bounded length.
#pragma once

#include <string>
#include <string_view>

#include "coexist/route.hpp"

namespace coexist::milter {

struct Reply {
    const char* code;      // "550"
    const char* extended;  // "5.1.1"
    std::string text;
};

// 550 5.1.1 <addr>: Recipient address rejected: <why>
Reply unknown_recipient_reply(std::string_view as_received, std::string_view detail);
// 451 4.3.0 <addr>: Recipient address rejected: temporary lookup failure, try again later
Reply lookup_failure_reply(std::string_view as_received);
// 451 4.3.0 for a message we could not process (the sender retries).
Reply message_tempfail_reply(std::string_view why);
// 554 5.4.6 mail forwarding loop: ...
Reply loop_reply(unsigned trace_count, unsigned loop_limit);

// "to=<address>" for a log line: the RCPT TO address without its angle brackets, through
// loggable_bracketed() (a '<' or '>' inside becomes '?', so the field cannot be ended early and
// others forged after it), at most 300 bytes.
std::string logged_recipient(std::string_view as_received);

// "QUEUEID: to=<as received>, action=rewrite, new=<routing address>, detail=\"...\"": one line
// per decision, in Postfix's "QUEUEID: key=value" style, with the fields coexist-policyd logs
// (decision_log_fields()).
std::string decision_log_line(std::string_view queue_id, std::string_view as_received,
                              const RoutingDecision& decision);

// Makes `text` safe for smfi_setreply: bytes outside printable ASCII become '?' (coexist's
// printable()), '%' is doubled, and the result is at most kMaxReplyText bytes (libmilter
// allows 980 per line).
inline constexpr std::size_t kMaxReplyText = 900;
std::string reply_safe(std::string_view text);

}  // namespace coexist::milter
