#include "coexist/user_key.hpp"

#include <fmt/format.h>
#include <unicode/uchar.h>
#include <unicode/utf8.h>

#include <optional>

#include "coexist/address.hpp"
#include "coexist/canonical_address.hpp"
#include "coexist/log_text.hpp"

namespace coexist {

std::string make_user_key(std::string_view internal_local, const DomainConfig& domain) {
    return canonical_key(internal_local, domain.name);
}

namespace {

// What an admin gave that holds nothing but blanks: named as given (the trimmed value would read
// '', as if nothing had been given at all).
KeyError blank_input(std::string_view what, std::string_view given) {
    return KeyError{fmt::format("{}'{}' is blank, not an address", what, loggable(given))};
}

// True when the local part holds an '@' outside quotes. parse_address(), as Postfix, takes the
// last '@' for the domain's, so "ann@@contoso.com" is the user "ann@": what a recipient's
// address may be, but from an admin's hand (a CSV cell, a command line) a typo. A local part
// that really holds an '@' is written quoted ("ann@x"@contoso.com), and export writes it so.
bool unquoted_at_in_local_part(std::string_view address) {
    if (!address.empty() && address.front() == '<') address.remove_prefix(1);
    if (!address.empty() && address.front() == '@') {  // a source route, "@a,@b:ann@contoso.com"
        const auto colon = address.find(':');
        if (colon == std::string_view::npos) return false;
        address.remove_prefix(colon + 1);
    }
    int unquoted_ats = 0;
    bool in_quote = false;
    for (std::size_t i = 0; i < address.size(); ++i) {
        const char c = address[i];
        if (c == '"') in_quote = !in_quote;
        else if (in_quote && c == '\\') ++i;
        else if (!in_quote && c == '@') ++unquoted_ats;
    }
    return unquoted_ats > 1;
}

KeyError at_in_local_part(std::string_view what, std::string_view address) {
    return KeyError{fmt::format("{}'{}' has an '@' in its local part (one that belongs there is quoted: "
                                "\"local@part\"@domain)", what, loggable(address))};
}

// The first character of `address` that shows as nothing or as a blank: a no-break space
// (U+00A0) or other Unicode space, a zero-width space (U+200B), a byte-order mark inside a
// cell (U+FEFF), a direction mark or override (U+200E, U+202E), a soft hyphen, a line
// separator, a C1 control. A spreadsheet leaves such characters in a cell, and the address
// then looks like a user's on screen while it is another key, which no mail reaches: ann's
// mail would still go where it went. RFC 6531 lets a UTF-8 local part hold them; no mailbox
// an admin migrates is named so. Malformed UTF-8 is left to parse_address().
std::optional<UChar32> invisible_character(std::string_view address) {
    const auto* bytes = reinterpret_cast<const uint8_t*>(address.data());
    const auto length = static_cast<int32_t>(address.size());
    for (int32_t i = 0; i < length;) {
        UChar32 c;
        U8_NEXT(bytes, i, length, c);
        if (c < 0x80) continue;  // ASCII: parse_address() judges blanks and controls
        switch (u_charType(c)) {
            case U_SPACE_SEPARATOR:
            case U_LINE_SEPARATOR:
            case U_PARAGRAPH_SEPARATOR:
            case U_FORMAT_CHAR:
            case U_CONTROL_CHAR:
                return c;
            default:
                break;
        }
    }
    return std::nullopt;
}

KeyError invisible_in(std::string_view what, std::string_view address, UChar32 c) {
    return KeyError{fmt::format("{}'{}' holds U+{:04X}, a character that shows as nothing or as a blank "
                                "(a spreadsheet's no-break or zero-width space?): type the address again",
                                what, loggable(address), static_cast<std::uint32_t>(c))};
}

}  // namespace

std::variant<std::string, KeyError> admin_user_key(const Config& config, std::string_view address) {
    const std::string_view given = address;
    address = trim_blanks(address);  // an admin's input: a padded cell or value is still the address
    if (address.empty() && !given.empty()) return blank_input("", given);
    if (const auto c = invisible_character(address)) return invisible_in("", address, *c);
    const auto a = parse_address(address);
    // Messages are built with fmt, not `"literal" + std::string`: GCC 12 at -O3 reports a false
    // -Wrestrict inside libstdc++'s basic_string insert for that form.
    if (!a) return KeyError{fmt::format("'{}' is not a valid address", loggable(address))};
    if (unquoted_at_in_local_part(address)) return at_in_local_part("", address);
    const DomainConfig* d = config.find_domain(a->domain);
    if (!d) return KeyError{fmt::format("'{}' is not in a managed domain", loggable(address))};
    // No check for the recipient delimiter: route() looks the whole local part up first, as
    // Postfix does, so a user named mary-ann (recipient_delimiter = -) is found as herself.
    std::string key = make_user_key(a->local, *d);
    // RFC 5321 4.5.3.1.3 bounds a path at 256 octets; LMDB refuses keys over 511 bytes with
    // MDB_BAD_VALSIZE at the write, too late for a line number. Refuse here, with the reason.
    if (key.size() > kMaxUserKeyBytes)
        return KeyError{fmt::format("'{}' is {} bytes long: longer than an address can be ({} bytes)",
                                    loggable(address, 64), key.size(), kMaxUserKeyBytes)};
    return key;
}

std::variant<std::string, KeyError> admin_target(const Config& config, std::string_view address) {
    auto target = stored_target(config, address);
    if (const auto* ok = std::get_if<std::string>(&target))
        if (const auto why = target_host_problem(*ok))
            return KeyError{fmt::format("target '{}': its domain is no host name mail can be sent to: {}",
                                        loggable(trim_blanks(address)), *why)};
    return target;
}

std::optional<std::string> target_host_problem(std::string_view target) {
    const auto at = target.rfind('@');
    return host_name_problem(at == std::string_view::npos ? target : target.substr(at + 1));
}

std::variant<std::string, KeyError> stored_target(const Config& config, std::string_view address) {
    const std::string_view given = address;
    address = trim_blanks(address);
    if (address.empty() && !given.empty()) return blank_input("target ", given);
    if (const auto c = invisible_character(address)) return invisible_in("target ", address, *c);
    const auto a = parse_address(address);
    if (!a) return KeyError{fmt::format("target '{}' is not a valid address", loggable(address))};
    if (unquoted_at_in_local_part(address)) return at_in_local_part("target ", address);
    if (config.find_domain(a->domain))
        return KeyError{fmt::format("target '{}' is in a managed domain: mail would loop", loggable(address))};
    // Stored in external form, as a virtual_alias_maps result is (mail_addr_find(3)).
    return quote_local_part(a->local) + "@" + a->domain;
}

}  // namespace coexist
