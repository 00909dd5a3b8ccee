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
    std::optional<std::string> orcpt;   // ORCPT= as handed to cleanup (see parse_rcpt_params)
};

// Reads NOTIFY= and ORCPT= (keywords case-insensitive) from the RCPT arguments that follow the
// address (argv[1..] of xxfi_envrcpt). Values that break RFC 3461 or RFC 6533 are dropped
// rather than passed on, and the added recipient gets ORCPT=<the original> instead (Postfix's
// smtpd is looser: it takes a raw '+' in a utf-8 value, or raw UTF-8 in an rfc822 one). An
// RFC 6533 "utf-8" ORCPT is decoded and kept in the form cleanup stores as the same address
// (esmtp_params.cpp, orcpt_for_cleanup).
RcptParams parse_rcpt_params(const std::vector<std::string>& args);

// The argument string for smfi_addrcpt_par: "NOTIFY=... ORCPT=..." — the sender's NOTIFY when
// given, and its ORCPT when given, else "ORCPT=rfc822;" + xtext(original), or for an original
// with UTF-8 in it "ORCPT=utf-8;" + the original (RFC 6533; xtext.hpp, utf8_addr_for_cleanup).
std::string added_recipient_params(const RcptParams& params, std::string_view original);

// The RCPT address without its angle brackets and surrounding blanks, case kept: what the
// sender wrote, for ORCPT and logs.
std::string_view strip_brackets(std::string_view address);

bool is_valid_notify(std::string_view value);
bool is_valid_orcpt(std::string_view value);

}  // namespace coexist::milter
