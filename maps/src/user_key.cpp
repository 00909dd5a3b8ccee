#include "coexist/user_key.hpp"

#include <fmt/format.h>

#include "coexist/address.hpp"

namespace coexist {

std::string make_user_key(std::string_view base_local, const DomainConfig& domain) {
    std::string key = lowercase_ascii(base_local);
    key.push_back('@');
    key.append(domain.name);
    return key;
}

std::variant<std::string, KeyError> admin_user_key(const Config& config, std::string_view address) {
    const auto a = parse_address(address);
    // Messages are built with fmt, not `"literal" + std::string`: GCC 12 at -O3 reports a false
    // -Wrestrict inside libstdc++'s basic_string insert for that form.
    if (!a) return KeyError{fmt::format("'{}' is not a valid address", address)};
    const DomainConfig* d = config.find_domain(a->domain);
    if (!d) return KeyError{fmt::format("'{}' is not in a managed domain", address)};
    const auto [base, extension] = split_extension(a->local, config.recipient_delimiter);
    if (!extension.empty())
        return KeyError{fmt::format("'{}' contains the recipient delimiter '{}': give the address "
                                    "without its extension", address, config.recipient_delimiter)};
    return make_user_key(base, *d);
}

std::variant<std::string, KeyError> admin_target(const Config& config, std::string_view address) {
    const auto a = parse_address(address);
    if (!a) return KeyError{fmt::format("target '{}' is not a valid address", address)};
    if (config.find_domain(a->domain))
        return KeyError{fmt::format("target '{}' is in a managed domain: mail would loop", address)};
    return a->local + "@" + a->domain;
}

}  // namespace coexist
