#include "coexist/route.hpp"

#include <ctime>
#include <fmt/format.h>

#include <stdexcept>

#include "coexist/address.hpp"
#include "coexist/canonical_address.hpp"
#include "coexist/log_text.hpp"
#include "coexist/utc_time.hpp"

namespace coexist {

std::string_view to_string(Action a) {
    switch (a) {
        case Action::foreign: return "foreign";
        case Action::relay: return "relay";
        case Action::rewrite: return "rewrite";
        case Action::dual: return "dual";
        case Action::reject: return "reject";
        case Action::tempfail: return "tempfail";
        case Action::transport: return "transport";
    }
    return "?";
}

std::string decision_log_fields(const RoutingDecision& d) {
    std::string out = fmt::format("action={}", to_string(d.action));
    if (!d.address.empty()) out += fmt::format(", new=<{}>", loggable_bracketed(d.address));
    if (!d.detail.empty()) out += fmt::format(", detail=\"{}\"", loggable_quoted(d.detail));
    return out;
}

namespace {

// The address a migrated user is reached at on the new side: the explicit target, else the
// user's canonical local part at the routing domain of the user's own managed domain (the
// primary's, not the recipient's: an alias nina2@contoso.com of nina@northwind.com is nina's,
// at o365.northwind.com; o365.contoso.com would be another nina's mailbox). The recipient's
// extension (as the sender wrote it) is carried over when keep_extension is set. The result is
// in Postfix's external form, what a virtual_alias_maps result is expected to be
// (mail_addr_find(3): "the value is expected to be in external (quoted) form"). `own` is the
// user's own managed domain, found by the caller. Throws
// std::runtime_error for a primary (or target) no parser reads: a tempfail that says why.
std::string routing_address(const DomainConfig& own, std::string_view primary, const UserRecord& record,
                            std::string_view extension, bool keep_extension) {
    const auto base = parse_address(record.target.empty() ? primary : std::string_view(record.target));
    if (!base) throw std::runtime_error("unreadable address in map: " + std::string(primary));
    std::string local = base->local;
    if (keep_extension) local.append(extension);
    return quote_local_part(local) + "@" + (record.target.empty() ? own.routing_domain : base->domain);
}

// The steps behind a decision, for --explain. A step whose arguments build strings is guarded by
// `if (trace)` at its call: the daemons' path (a null Trace) must not pay for them.
class Trace {
public:
    explicit Trace(std::vector<std::string>* steps) : steps_(steps) {}
    explicit operator bool() const { return steps_ != nullptr; }
    template <typename... Args>
    void step(fmt::format_string<Args...> format, Args&&... args) {
        if (steps_) steps_->push_back(fmt::format(format, std::forward<Args>(args)...));
    }

private:
    std::vector<std::string>* steps_;
};

// The record for a recipient, searched as Postfix searches its tables (virtual(5), "TABLE
// SEARCH ORDER"; mail_addr_find_opt() in src/global/mail_addr_find.c): the whole local part
// first, so that mary-ann is herself even with recipient_delimiter = -; only when that finds
// nothing, the local part cut at the first delimiter character (strip_addr.c). `extension` is
// set to what was cut off when that second lookup found the user.
UserLookup find_user(const Config& config, MapView& map, const Address& address,
                     const DomainConfig& domain, std::string_view& extension, Trace& trace) {
    const std::string key = canonical_key(address.local, domain.name);
    UserLookup found = map.find(key);
    if (trace)
        trace.step("lookup {}: {}", key, found.record ? (found.via_alias ? "alias of " + found.primary : "user")
                                                       : std::string("not found"));
    if (found.record) return found;
    const auto split = strip_extension(address.local, config.recipient_delimiter);
    if (!split) return found;
    const std::string base_key = canonical_key(split->base, domain.name);
    UserLookup base = map.find(base_key);
    if (trace)
        trace.step("lookup {} (extension {} cut at the recipient_delimiter): {}", base_key, split->extension,
                   base.record ? (base.via_alias ? "alias of " + base.primary : "user") : std::string("not found"));
    if (!base.record) return found;
    extension = split->extension;
    return base;
}

// An address of `domain` that has no user in the map. `address` is null for a recipient that
// parse_address() cannot read (unreadable_recipients_domain()): no user can have it.
RoutingDecision unknown_user(const Config& config, MapView& map, const Address* address,
                             const DomainConfig& domain, std::int64_t now, Trace& trace) {
    const UnknownRecipient policy = config.unknown_policy(domain);
    if (trace)
        trace.step("unknown user: unknown_recipient = {}{}", to_string(policy),
                   domain.unknown_recipient ? " ([domain " + domain.name + "])" : std::string(" ([routing])"));
    const std::string why = address ? "unknown user" : std::string(kNotAnAddress);
    if (policy == UnknownRecipient::relay) return {Action::relay, {}, why};
    // No routing address can be made of what is no address: it goes on unchanged, and the old
    // system answers for it as for any address it does not know.
    if (policy == UnknownRecipient::new_system && !address)
        return {Action::relay, {}, why + ", passed on unchanged"};
    if (policy == UnknownRecipient::new_system) {
        if (domain.mode == DomainMode::transport)
            return {Action::transport, domain.new_system_nexthop, "unknown user, sent to the new system"};
        // The whole local part, extension included: the new system decides what it accepts.
        // The canonical key is already in external form (quoted where the local part needs it).
        const std::string key = canonical_key(address->local, domain.name);
        const std::string_view local = std::string_view(key).substr(0, key.rfind('@'));
        return {Action::rewrite, fmt::format("{}@{}", local, domain.routing_domain),
                "unknown user, sent to the new system"};
    }
    // Never reject on doubt (design 13.6): a map with nobody of this domain is more likely
    // empty or wrongly imported than right about every address of it. Defer instead.
    const auto domain_users = map.domain_user_count(domain.name);
    if (!domain_users)
        return {Action::tempfail, {}, "map keeps no per-domain counts yet (any coexist-map write adds them): "
                                      "not rejecting unknown users of " + domain.name};
    if (*domain_users == 0)
        return {Action::tempfail, {}, "no user of " + domain.name + " in the map: not rejecting on doubt"};
    // A directory-fed map that has not been in sync for max_age may be missing the newest
    // users: defer rather than refuse them (design 13.6).
    if (config.directory.configured()) {
        const auto synced = map.directory_synced_at();
        if (!synced)
            return {Action::tempfail, {}, "the directory never synced this map: not rejecting unknown users of " + domain.name};
        if (now - *synced > static_cast<std::int64_t>(config.directory.max_age_seconds))
            return {Action::tempfail, {}, fmt::format("last directory sync {} s ago (max_age {} s): not rejecting "
                                                      "unknown users of {}", now - *synced,
                                                      config.directory.max_age_seconds, domain.name)};
        trace.step("directory: last sync {} s ago, within max_age", now - *synced);
    }
    return {Action::reject, {}, why};
}

RoutingDecision decide(const Config& config, MapReader& map, const Address& address, std::int64_t now,
                       Trace& trace) {
    const DomainConfig* domain = config.find_domain(address.domain);
    if (!domain) {
        trace.step("domain {}: not a managed domain", address.domain);
        return {Action::foreign, {}, {}};
    }
    if (trace)
        trace.step("domain {}: managed{}, routing domain {}{}", address.domain,
                   address.domain == domain->name ? std::string() : " (an alias of " + domain->name + ")",
                   domain->routing_domain,
                   domain->mode == DomainMode::transport
                       ? ", mode transport: migrated users keep their address, next hop " + domain->new_system_nexthop
                       : std::string());

    // Every lookup of this decision in one snapshot of the map: the whole local part, the part
    // before the delimiter, the alias hop and the counts behind a refusal see the same commit.
    MapView view(map);
    std::string_view extension;
    const UserLookup found = find_user(config, view, address, *domain, extension, trace);
    if (!found.record) return unknown_user(config, view, &address, *domain, now, trace);

    const UserRecord& record = *found.record;
    if (trace) {
        trace.step("record {}: state {}{}{}{}", found.primary, to_string(record.state),
                   record.target.empty() ? std::string() : ", target " + record.target,
                   record.batch.empty() ? std::string() : ", batch " + record.batch,
                   record.owner == Owner::directory ? ", owned by the directory (" + record.dn + ")" : std::string());
        if (record.override_state)
            trace.step("override by the admin: {} (the directory says {})", to_string(*record.override_state),
                       to_string(record.state));
        if (record.pending_state)
            trace.step("scheduled change: {} at {} ({})", to_string(*record.pending_state),
                       utc_timestamp(record.pending_at), record.pending_due(now) ? "due: in effect" : "not yet due");
    }
    std::string detail = found.via_alias ? "alias of " + found.primary : std::string();
    if (record.pending_due(now))
        detail += fmt::format("{}scheduled {} at {}", detail.empty() ? "" : ", ", to_string(*record.pending_state),
                              utc_timestamp(record.pending_at));
    // The user's own domain decides how the user is reached (mode, next hop, routing domain),
    // also for an alias in another managed domain: the alias is the user's address there. A
    // primary in no configured domain (its [domain] section removed while its users stay in the
    // map) has no way to the new system in either mode: a tempfail that says so, never a guess.
    const DomainConfig* own = domain;
    if (found.via_alias) {
        const auto primary = parse_address(found.primary);
        own = primary ? config.find_domain(primary->domain) : nullptr;
    }
    const State state = record.state_at(now);
    if (!own && state != State::source)
        return {Action::tempfail, {}, "user " + found.primary + " is in no managed domain of this configuration"};
    switch (state) {
        case State::source:
            return {Action::relay, {}, std::move(detail)};
        case State::migrated:
            // Transport mode (design 11): the recipient stays; Postfix's transport_maps (the
            // socketmap `transport` table) sends it to the new system.
            // An explicit target names another address on the new system (the tenant's
            // onmicrosoft.com one): only a rewrite reaches it, in either mode.
            if (own->mode == DomainMode::transport && record.target.empty())
                return {Action::transport, own->new_system_nexthop, std::move(detail)};
            return {Action::rewrite,
                    routing_address(*own, found.primary, record, extension, config.keep_extension),
                    std::move(detail)};
        case State::dual:
            return {Action::dual, routing_address(*own, found.primary, record, extension, config.keep_extension),
                    std::move(detail)};
    }
    return {Action::tempfail, {}, "unknown state in map"};
}

// decide_it()'s decision; an exception from it (an unreadable map, std::bad_alloc) is a tempfail
// that says why when it can, never an escape. Never throws.
template <typename Decide>
RoutingDecision tempfail_on_exception(Decide&& decide_it) noexcept {
    try {
        return decide_it();
    } catch (const std::exception& e) {
        try {
            return {Action::tempfail, {}, std::string("map unavailable: ") + e.what()};
        } catch (...) {
        }
    } catch (...) {
    }
    return {Action::tempfail, {}, {}};
}

RoutingDecision decide_safely(const Config& config, MapReader& map, const Address& recipient, std::int64_t now,
                              Trace& trace) noexcept {
    return tempfail_on_exception([&] { return decide(config, map, recipient, now, trace); });
}

// The managed domain a recipient that parse_address() cannot read is addressed to (too long,
// bytes no address has, a local part no quoting rule allows): the text after its last '@', less
// a closing '>', when that names one. Postfix passes such a recipient on like any other (it
// only bounds the line), so each caller must answer for it as for an unknown user of that
// domain (unknown_user()): refused in a reject domain, as the socketmap's NOTFOUND refuses it,
// never passed on to the old system by one daemon and refused by another.
const DomainConfig* unreadable_recipients_domain(const Config& config, std::string_view recipient) {
    if (!recipient.empty() && recipient.back() == '>') recipient.remove_suffix(1);
    const auto at = recipient.rfind('@');
    if (at == std::string_view::npos) return nullptr;
    // As parse_address() reads a domain: a trailing dot dropped (resolve_clnt: "ann@contoso.com."
    // is ann@contoso.com), case folded, a U-label as its A-label.
    const auto domain = matched_domain(recipient.substr(at + 1));
    return domain ? config.find_domain(*domain) : nullptr;
}

RoutingDecision decide_unreadable(const Config& config, MapReader& map, std::string_view recipient,
                                  std::int64_t now, Trace& trace) noexcept {
    return tempfail_on_exception([&]() -> RoutingDecision {
        const DomainConfig* domain = unreadable_recipients_domain(config, recipient);
        if (!domain) return {Action::foreign, {}, std::string(kNotAnAddress)};
        trace.step("not an address, but of the managed domain {}", domain->name);
        MapView view(map);  // the counts behind a refusal
        return unknown_user(config, view, nullptr, *domain, now, trace);
    });
}

// decide_safely() for the recipient as received. Never throws: std::bad_alloc while parsing
// is a tempfail, as in deciding.
RoutingDecision decide_received(const Config& config, MapReader& map, std::string_view recipient, std::int64_t now,
                                Trace& trace) noexcept {
    try {
        const auto address = parse_address(recipient);
        if (!address) return decide_unreadable(config, map, recipient, now, trace);
        return decide_safely(config, map, *address, now, trace);
    } catch (...) {
    }
    return {Action::tempfail, {}, {}};
}

std::int64_t unix_now() noexcept { return static_cast<std::int64_t>(::time(nullptr)); }

}  // namespace

std::optional<std::string> routing_address(const Config& config, std::string_view primary, const UserRecord& record) {
    const auto address = parse_address(primary);
    if (!address) throw std::runtime_error("unreadable address in map: " + std::string(primary));
    const DomainConfig* own = config.find_domain(address->domain);
    if (!own) return std::nullopt;
    return routing_address(*own, primary, record, {}, config.keep_extension);
}

RoutingDecision route(const Config& config, MapReader& map, std::string_view recipient) noexcept {
    Trace none(nullptr);
    return decide_received(config, map, recipient, unix_now(), none);
}

RoutingDecision route(const Config& config, MapReader& map, const Address& recipient) noexcept {
    Trace none(nullptr);
    return decide_safely(config, map, recipient, unix_now(), none);
}

RouteExplanation explain_route(const Config& config, MapReader& map, std::string_view recipient,
                               std::int64_t now) noexcept {
    RouteExplanation out;
    try {
        Trace trace(&out.steps);
        out.decision = decide_received(config, map, recipient, now, trace);
    } catch (...) {  // std::bad_alloc from a step: the decision alone still stands
        out.decision = route(config, map, recipient);
    }
    return out;
}

}  // namespace coexist
