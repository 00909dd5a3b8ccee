#include "coexist/route.hpp"

#include "coexist/address.hpp"
#include "coexist/user_key.hpp"

namespace coexist {

std::string_view to_string(Action a) {
    switch (a) {
        case Action::foreign: return "foreign";
        case Action::relay: return "relay";
        case Action::rewrite: return "rewrite";
        case Action::dual: return "dual";
        case Action::reject: return "reject";
        case Action::tempfail: return "tempfail";
    }
    return "?";
}

namespace {

// The address a migrated user is reached at on the new side: the explicit target, else the
// user's local part at the managed domain's routing domain; the recipient's +extension is
// carried over when keep_extension is set.
std::string routing_address(const Config& config, const DomainConfig& domain,
                            std::string_view primary, const UserRecord& record,
                            std::string_view extension) {
    std::string_view base_local, base_domain;
    if (!record.target.empty()) {
        const auto at = record.target.rfind('@');
        base_local = std::string_view(record.target).substr(0, at);
        base_domain = std::string_view(record.target).substr(at + 1);
    } else {
        base_local = primary.substr(0, primary.rfind('@'));
        base_domain = domain.routing_domain;
    }
    std::string out(base_local);
    if (config.keep_extension) out.append(extension);
    out.push_back('@');
    out.append(base_domain);
    return out;
}

RoutingDecision decide(const Config& config, MapReader& map, std::string_view recipient) {
    const auto address = parse_address(recipient);
    if (!address) return {Action::foreign, {}, "not a routable address"};
    const DomainConfig* domain = config.find_domain(address->domain);
    if (!domain) return {Action::foreign, {}, {}};

    const auto [base, extension] = split_extension(address->local, config.recipient_delimiter);
    const std::string key = make_user_key(base, *domain);
    const UserLookup found = map.find(key);
    if (!found.record) {
        if (config.unknown_policy(*domain) != UnknownRecipient::reject) return {Action::relay, {}, "unknown user"};
        // Never reject on doubt (design 13.6): a map with nobody of this domain is more likely
        // empty or wrongly imported than right about every address of it. Defer instead.
        if (!found.domain_users)
            return {Action::tempfail, {}, "map keeps no per-domain counts yet (any coexist-map write adds them): "
                                          "not rejecting unknown users of " + domain->name};
        if (*found.domain_users == 0)
            return {Action::tempfail, {}, "no user of " + domain->name + " in the map: not rejecting on doubt"};
        return {Action::reject, {}, "unknown user"};
    }
    std::string detail = found.via_alias ? "alias of " + found.primary : std::string();
    switch (found.record->state) {
        case State::source:
            return {Action::relay, {}, std::move(detail)};
        case State::migrated:
            return {Action::rewrite, routing_address(config, *domain, found.primary, *found.record, extension),
                    std::move(detail)};
        case State::dual:
            return {Action::dual, routing_address(config, *domain, found.primary, *found.record, extension),
                    std::move(detail)};
    }
    return {Action::tempfail, {}, "unknown state in map"};
}

}  // namespace

RoutingDecision route(const Config& config, MapReader& map, std::string_view recipient) noexcept {
    try {
        return decide(config, map, recipient);
    } catch (const std::exception& e) {
        try {
            return {Action::tempfail, {}, std::string("map unavailable: ") + e.what()};
        } catch (...) {
        }
    } catch (...) {
    }
    return {Action::tempfail, {}, {}};
}

}  // namespace coexist
