// The routing decision (design section 2): the only place where routing is decided. The milter,
// the policy daemon, the socketmap server and `coexist-map route` all call route().
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coexist/address.hpp"
#include "coexist/config.hpp"
#include "coexist/map_reader.hpp"

namespace coexist {

enum class Action { foreign, relay, rewrite, dual, reject, tempfail, transport };

std::string_view to_string(Action a);

struct RoutingDecision {
    Action action = Action::foreign;
    // rewrite: the address that replaces the recipient; dual: the address added beside it;
    // transport: the next hop (the domain's new_system_nexthop; the recipient is kept, design
    // 11); empty otherwise.
    std::string address;
    // A short human-readable why, for logs and `coexist-map route`: "unknown user",
    // "alias of ann@contoso.com", "map unavailable: ...". May be empty.
    std::string detail;
};

// A decision's fields in a log line, in Postfix's "key=value, ..." style, the same in every
// program: `action=rewrite, new=<ann@o365.contoso.com>, detail="alias of a@contoso.com"`. new=
// only for an action with an address (rewrite, dual: the routing address; transport: the next
// hop), detail= only when there is one. The address and the detail pass through printable().
// Throws std::bad_alloc.
std::string decision_log_fields(const RoutingDecision& d);

// Never throws: an internal error or an unreadable map is Action::tempfail; so is an unknown
// user of a `reject` domain while the map holds no user of that domain (never reject on doubt).
// `recipient` is the envelope address as received (angle brackets allowed).
RoutingDecision route(const Config& config, MapReader& map, std::string_view recipient) noexcept;

// The same for a recipient the caller has parsed already (parse_address()): the socketmap server
// must tell a key that is no address (NOTFOUND) from an address of a domain it does not manage,
// and the policy service decides on what smtpd sent; neither parses twice. Never throws.
RoutingDecision route(const Config& config, MapReader& map, const Address& recipient) noexcept;

// The detail of the foreign decision for a recipient parse_address() cannot read.
inline constexpr std::string_view kNotAnAddress = "not a routable address";

// route()'s answer with the steps behind it, for `coexist-map route --explain`: the domain and
// its defaults, each key looked up, the alias hop, the record (owner, override), and the
// pending scheduled change. Same guarantees as route(); `now` is unix time in seconds.
struct RouteExplanation {
    RoutingDecision decision;
    std::vector<std::string> steps;
};
RouteExplanation explain_route(const Config& config, MapReader& map, std::string_view recipient,
                               std::int64_t now) noexcept;

// The address route() sends a migrated or dual user's mail to, for a recipient without an
// extension: the record's explicit target, else the canonical local part of `primary` (a user key)
// at its domain's routing_domain; Postfix's external (quoted) form. For what the other systems
// need (`coexist-map commands`), built by the very code route() uses. nullopt when `primary` is
// not in a managed domain (the config changed since it was written); throws std::runtime_error
// when `primary` or the target is not a readable address.
std::optional<std::string> routing_address(const Config& config, std::string_view primary, const UserRecord& record);

}  // namespace coexist
