// The key of a user in the map: the canonical address (canonical_address.hpp, design 13.2) of
// the local part at its managed domain (a domain alias counts as that domain). route() and the
// admin tool derive it the same way; a local part with a delimiter character is a name like any
// other (mary-ann), as in Postfix's tables.
#pragma once

#include <cstddef>

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "coexist/config.hpp"

namespace coexist {

// The longest key the map stores: RFC 5321's 256-octet path less its angle brackets, with room
// for the quotes a canonical local part may need.
inline constexpr std::size_t kMaxUserKeyBytes = 320;

// `internal_local` is Postfix's internal (unquoted) form, as parse_address() gives it.
std::string make_user_key(std::string_view internal_local, const DomainConfig& domain);

// For addresses an admin gives (CLI, CSV): the key, or why it cannot be one.
struct KeyError {
    std::string reason;
};
std::variant<std::string, KeyError> admin_user_key(const Config& config, std::string_view address);

// A target an admin gives: a valid address outside every managed domain (else mail would loop
// back into the map), whose domain is a host name mail can be sent to (target_host_problem()).
// Returns the address with its domain lowercased, or why not.
std::variant<std::string, KeyError> admin_target(const Config& config, std::string_view address);

// admin_target() without the host-name rule: a target as a map may hold it already (a dump
// restored, written before that rule), refused only when it is no address or would loop.
std::variant<std::string, KeyError> stored_target(const Config& config, std::string_view address);

// Why a stored target's domain is no host name mail can be sent to (host_name_problem(),
// address.hpp), or nullopt: for the warnings of restore and check about targets kept so.
std::optional<std::string> target_host_problem(std::string_view target);

}  // namespace coexist
