#include "coexist/user_key.hpp"

#include <fmt/format.h>

#include "coexist/address.hpp"
#include "coexist/canonical_address.hpp"

namespace coexist {

std::string make_user_key(std::string_view internal_local, const DomainConfig& domain) {
    return canonical_key(internal_local, domain.name);
}

namespace {

// What an admin gave that holds nothing but blanks: named as given (the trimmed value would read
// '', as if nothing had been given at all).
KeyError blank_input(std::string_view what, std::string_view given) {
    return KeyError{fmt::format("{}'{}' is blank, not an address", what, given)};
}

}  // namespace

std::variant<std::string, KeyError> admin_user_key(const Config& config, std::string_view address) {
    const std::string_view given = address;
    address = trim_blanks(address);  // an admin's input: a padded cell or value is still the address
    if (address.empty() && !given.empty()) return blank_input("", given);
    const auto a = parse_address(address);
    // Messages are built with fmt, not `"literal" + std::string`: GCC 12 at -O3 reports a false
    // -Wrestrict inside libstdc++'s basic_string insert for that form.
    if (!a) return KeyError{fmt::format("'{}' is not a valid address", address)};
    const DomainConfig* d = config.find_domain(a->domain);
    if (!d) return KeyError{fmt::format("'{}' is not in a managed domain", address)};
    // No check for the recipient delimiter: route() looks the whole local part up first, as
    // Postfix does, so a user named mary-ann (recipient_delimiter = -) is found as herself.
    std::string key = make_user_key(a->local, *d);
    // RFC 5321 4.5.3.1.3 bounds a path at 256 octets; LMDB refuses keys over 511 bytes with
    // MDB_BAD_VALSIZE at the write, too late for a line number. Refuse here, with the reason.
    if (key.size() > kMaxUserKeyBytes)
        return KeyError{fmt::format("'{}' is {} bytes long: longer than an address can be ({} bytes)",
                                    address.substr(0, 64), key.size(), kMaxUserKeyBytes)};
    return key;
}

std::variant<std::string, KeyError> admin_target(const Config& config, std::string_view address) {
    const std::string_view given = address;
    address = trim_blanks(address);
    if (address.empty() && !given.empty()) return blank_input("target ", given);
    const auto a = parse_address(address);
    if (!a) return KeyError{fmt::format("target '{}' is not a valid address", address)};
    if (config.find_domain(a->domain))
        return KeyError{fmt::format("target '{}' is in a managed domain: mail would loop", address)};
    // Stored in external form, as a virtual_alias_maps result is (mail_addr_find(3)).
    return quote_local_part(a->local) + "@" + a->domain;
}

}  // namespace coexist
