#include "esmtp_params.hpp"

#include "coexist/address.hpp"
#include "xtext.hpp"

namespace coexist::milter {

namespace {

// A keyword=value parameter whose keyword equals `keyword` (case-insensitive); the value.
std::optional<std::string_view> param_value(std::string_view arg, std::string_view keyword) {
    if (arg.size() <= keyword.size() || arg[keyword.size()] != '=') return std::nullopt;
    if (lowercase_ascii(arg.substr(0, keyword.size())) != lowercase_ascii(keyword)) return std::nullopt;
    return arg.substr(keyword.size() + 1);
}

// The ORCPT value to hand cleanup for the one the sender gave, or nullopt to drop it. An
// "rfc822" (or other) value is xtext, which cleanup decodes as smtpd did: passed on as it came.
// A "utf-8" one (RFC 6533) is decoded here, as smtpd decodes it, and handed over in the form
// cleanup stores as that address (xtext.hpp): given as it came, Postfix 3.7 stored
// "d\x{E9}vy" for dévy and the next hop got "d\x{5C}x{E9}vy"; a raw UTF-8 one was dropped.
// An all-ASCII address becomes rfc822, as Postfix itself types one (smtp_proto.c).
std::optional<std::string> orcpt_for_cleanup(std::string_view value) {
    const auto semi = value.find(';');
    if (semi != std::string_view::npos && lowercase_ascii(value.substr(0, semi)) == "utf-8") {
        const auto address = decode_utf8_addr_text(value.substr(semi + 1));
        if (!address) return std::nullopt;
        if (is_ascii(*address)) return "rfc822;" + xtext_encode(*address);
        return "utf-8;" + utf8_addr_for_cleanup(*address);
    }
    if (!is_valid_orcpt(value)) return std::nullopt;
    return std::string(value);
}

}  // namespace

bool is_valid_notify(std::string_view value) {
    // RFC 3461: NEVER, or a comma-separated list of SUCCESS, FAILURE, DELAY.
    const std::string v = lowercase_ascii(value);
    if (v == "never") return true;
    if (v.empty()) return false;
    std::string_view rest(v);
    while (true) {
        const auto comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        if (item != "success" && item != "failure" && item != "delay") return false;
        if (comma == std::string_view::npos) return true;
        rest.remove_prefix(comma + 1);
    }
}

bool is_valid_orcpt(std::string_view value) {
    // addr-type ";" xtext; the type is an atom (we accept letters, digits and '-').
    const auto semi = value.find(';');
    if (semi == 0 || semi == std::string_view::npos || semi + 1 >= value.size()) return false;
    for (const char c : value.substr(0, semi))
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    return is_xtext(value.substr(semi + 1));
}

RcptParams parse_rcpt_params(const std::vector<std::string>& args) {
    RcptParams out;
    for (const auto& arg : args) {
        if (auto v = param_value(arg, "NOTIFY"); v && !out.notify && is_valid_notify(*v))
            out.notify = std::string(*v);
        else if (auto o = param_value(arg, "ORCPT"); o && !out.orcpt)
            out.orcpt = orcpt_for_cleanup(*o);
    }
    return out;
}

std::string added_recipient_params(const RcptParams& params, std::string_view original) {
    std::string out;
    if (params.notify) out = "NOTIFY=" + *params.notify + " ";
    out += "ORCPT=";
    if (params.orcpt)
        out += *params.orcpt;
    else if (is_ascii(original))
        out += "rfc822;" + xtext_encode(original);
    else  // an SMTPUTF8 address: typed utf-8, as Postfix types the ORCPT it makes for one
        out += "utf-8;" + utf8_addr_for_cleanup(original);
    return out;
}

std::string_view strip_brackets(std::string_view address) {
    while (!address.empty() && (address.front() == ' ' || address.front() == '\t')) address.remove_prefix(1);
    while (!address.empty() && (address.back() == ' ' || address.back() == '\t')) address.remove_suffix(1);
    if (address.size() >= 2 && address.front() == '<' && address.back() == '>')
        address = address.substr(1, address.size() - 2);
    return address;
}

}  // namespace coexist::milter
