#include "coexist/route.hpp"

#include <ctime>
#include <fmt/format.h>

#include <stdexcept>

#include "coexist/address.hpp"
#include "coexist/canonical_address.hpp"

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
// user's canonical local part at the managed domain's routing domain; the recipient's extension
// (as the sender wrote it) is carried over when keep_extension is set. The result is in
// Postfix's external form, what a virtual_alias_maps result is expected to be
// (mail_addr_find(3): "the value is expected to be in external (quoted) form").
std::string routing_address(const Config& config, const DomainConfig& domain,
                            std::string_view primary, const UserRecord& record,
                            std::string_view extension) {
    const auto base = parse_address(record.target.empty() ? primary : std::string_view(record.target));
    if (!base) throw std::runtime_error("unreadable address in map: " + std::string(primary));
    std::string local = base->local;
    if (config.keep_extension) local.append(extension);
    return quote_local_part(local) + "@" + (record.target.empty() ? domain.routing_domain : base->domain);
}

// The record for a recipient, searched as Postfix searches its tables (virtual(5), "TABLE
// SEARCH ORDER"; mail_addr_find_opt() in src/global/mail_addr_find.c): the whole local part
// first, so that mary-ann is herself even with recipient_delimiter = -; only when that finds
// nothing, the local part cut at the first delimiter character (strip_addr.c). `extension` is
// set to what was cut off when that second lookup found the user.
UserLookup find_user(const Config& config, MapReader& map, const Address& address,
                     const DomainConfig& domain, std::string_view& extension) {
    UserLookup found = map.find(canonical_key(address.local, domain.name));
    if (found.record) return found;
    const auto split = strip_extension(address.local, config.recipient_delimiter);
    if (!split) return found;
    UserLookup base = map.find(canonical_key(split->base, domain.name));
    if (!base.record) return found;
    extension = split->extension;
    return base;
}

RoutingDecision decide(const Config& config, MapReader& map, std::string_view recipient) {
    const auto address = parse_address(recipient);
    if (!address) return {Action::foreign, {}, "not a routable address"};
    const DomainConfig* domain = config.find_domain(address->domain);
    if (!domain) return {Action::foreign, {}, {}};

    std::string_view extension;
    const UserLookup found = find_user(config, map, *address, *domain, extension);
    if (!found.record) {
        if (config.unknown_policy(*domain) != UnknownRecipient::reject) return {Action::relay, {}, "unknown user"};
        // Never reject on doubt (design 13.6): a map with nobody of this domain is more likely
        // empty or wrongly imported than right about every address of it. Defer instead.
        const auto domain_users = map.domain_user_count(domain->name);
        if (!domain_users)
            return {Action::tempfail, {}, "map keeps no per-domain counts yet (any coexist-map write adds them): "
                                          "not rejecting unknown users of " + domain->name};
        if (*domain_users == 0)
            return {Action::tempfail, {}, "no user of " + domain->name + " in the map: not rejecting on doubt"};
        // A directory-fed map that has not been in sync for max_age may be missing the newest
        // users: defer rather than refuse them (design 13.6).
        if (config.directory.configured()) {
            const auto synced = map.directory_synced_at();
            const auto now = static_cast<std::int64_t>(::time(nullptr));
            if (!synced)
                return {Action::tempfail, {}, "the directory never synced this map: not rejecting unknown users of " + domain->name};
            if (now - *synced > static_cast<std::int64_t>(config.directory.max_age_seconds))
                return {Action::tempfail, {}, fmt::format("last directory sync {} s ago (max_age {} s): not rejecting "
                                                          "unknown users of {}", now - *synced,
                                                          config.directory.max_age_seconds, domain->name)};
        }
        return {Action::reject, {}, "unknown user"};
    }
    std::string detail = found.via_alias ? "alias of " + found.primary : std::string();
    switch (found.record->effective_state()) {
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

std::optional<std::string> routing_address(const Config& config, std::string_view primary, const UserRecord& record) {
    const auto address = parse_address(primary);
    if (!address) throw std::runtime_error("unreadable address in map: " + std::string(primary));
    const DomainConfig* domain = config.find_domain(address->domain);
    if (!domain) return std::nullopt;
    return routing_address(config, *domain, primary, record, {});
}

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
