// The canonical key of a user in the map: lowercase(local)@managed-domain. route() derives it
// from a recipient (splitting off the +extension); the admin tool from an address it is given
// (where an extension is an error).
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "coexist/config.hpp"

namespace coexist {

std::string make_user_key(std::string_view base_local, const DomainConfig& domain);

// For addresses an admin gives (CLI, CSV): the key, or why it cannot be one.
struct KeyError {
    std::string reason;
};
std::variant<std::string, KeyError> admin_user_key(const Config& config, std::string_view address);

// A target an admin gives: a valid address outside every managed domain (else mail would loop
// back into the map). Returns the address with its domain lowercased, or why not.
std::variant<std::string, KeyError> admin_target(const Config& config, std::string_view address);

}  // namespace coexist
