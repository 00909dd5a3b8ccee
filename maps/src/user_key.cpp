#include "coexist/user_key.hpp"

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
    if (!a) return KeyError{"'" + std::string(address) + "' is not a valid address"};
    const DomainConfig* d = config.find_domain(a->domain);
    if (!d) return KeyError{"'" + std::string(address) + "' is not in a managed domain"};
    const auto [base, extension] = split_extension(a->local, config.recipient_delimiter);
    if (!extension.empty())
        return KeyError{"'" + std::string(address) + "' contains the recipient delimiter '" +
                        config.recipient_delimiter + "': give the address without its extension"};
    return make_user_key(base, *d);
}

std::variant<std::string, KeyError> admin_target(const Config& config, std::string_view address) {
    const auto a = parse_address(address);
    if (!a) return KeyError{"target '" + std::string(address) + "' is not a valid address"};
    if (config.find_domain(a->domain))
        return KeyError{"target '" + std::string(address) + "' is in a managed domain: mail would loop"};
    return a->local + "@" + a->domain;
}

}  // namespace coexist
