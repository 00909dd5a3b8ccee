// The ESMTP parameters of one RCPT TO, and the parameters of the recipient that replaces it.
// Postfix's smfi_addrcpt_par keeps only NOTIFY= and ORCPT= (postfix-notes 1.5): we pass the
// sender's own NOTIFY and ORCPT on, and when it gave no ORCPT we add ORCPT=rfc822;<original>,
// so the delivery log shows orig_to= and DSNs name the address the sender used.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coexist::milter {

struct RcptParams {
    std::optional<std::string> notify;  // value of NOTIFY=, when well-formed
    std::optional<std::string> orcpt;   // value of ORCPT= (type;xtext), when well-formed
};

// Reads NOTIFY= and ORCPT= (keywords case-insensitive) from the RCPT arguments that follow the
// address (argv[1..] of xxfi_envrcpt). Malformed values are dropped rather than passed on:
// Postfix refuses the whole added recipient over a bad NOTIFY or ORCPT.
RcptParams parse_rcpt_params(const std::vector<std::string>& args);

// The argument string for smfi_addrcpt_par: "NOTIFY=... ORCPT=..." — the sender's NOTIFY when
// given, and its ORCPT when given, else "ORCPT=rfc822;" + xtext(original).
std::string added_recipient_params(const RcptParams& params, std::string_view original);

// The RCPT address without its angle brackets and surrounding blanks, case kept: what the
// sender wrote, for ORCPT and logs.
std::string_view strip_brackets(std::string_view address);

bool is_valid_notify(std::string_view value);
bool is_valid_orcpt(std::string_view value);

}  // namespace coexist::milter
