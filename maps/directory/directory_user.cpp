#include "directory_user.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <variant>

#include "coexist/address.hpp"
#include "coexist/canonical_address.hpp"
#include "coexist/log_text.hpp"
#include "coexist/user_key.hpp"

namespace coexist::directory {

namespace {

// Whether the entry's memberOf (AD, or OpenLDAP's memberof overlay) names the group.
bool member_of(const Entry& entry, const std::string& group_dn) {
    if (group_dn.empty()) return false;
    const auto* values = entry.values("memberof");
    if (!values) return false;
    const std::string wanted = normalize_dn(group_dn);
    return std::any_of(values->begin(), values->end(), [&](const std::string& v) { return normalize_dn(v) == wanted; });
}

// Why an address value that gives no key is the directory's mistake (not an address, two in
// one value, longer than an address can be); nullopt for an address of a domain we do not
// manage, which is normal in a directory and ignored without a word.
std::optional<std::string> malformed_address(const Config& config, std::string_view value, const KeyError& error) {
    const auto a = parse_address(trim_blanks(value));
    if (a && !config.find_domain(a->domain)) return std::nullopt;
    // The value is quoted short in the warning: a 5000-byte one would drown the log line.
    constexpr std::size_t kQuoted = 64;
    std::string why = a ? printable(error.reason) : std::string("not a valid address");
    if (value.size() > kQuoted) why += fmt::format(" ({} bytes)", value.size());
    return fmt::format("'{}': {}", printable(value, kQuoted), why);
}

// A warning for an attribute that should hold one value and holds several that say different
// things: the map keeps what it had for `kept` ("state", "routing", "batch").
std::string disagreeing_values(std::string_view key, std::string_view attribute, const std::vector<std::string>& values,
                               std::string_view kept) {
    constexpr std::size_t kQuoted = 3;  // a few are enough to see the mistake
    std::string quoted;
    for (std::size_t i = 0; i < values.size() && i < kQuoted; ++i)
        quoted += fmt::format("{}'{}'", i ? ", " : "", printable(values[i], 64));
    if (values.size() > kQuoted) quoted += fmt::format(" and {} more", values.size() - kQuoted);
    return fmt::format("{}: {} has {} values that disagree ({}): {} kept as it is", key, attribute, values.size(),
                       quoted, kept);
}

void sort_unique(std::vector<std::string>& v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
}

}  // namespace

std::optional<std::string_view> smtp_value(std::string_view value) {
    const auto colon = value.find(':');
    const auto at = value.find('@');
    // A colon before any '@' is a type prefix; a colon after it belongs to the address
    // (a quoted local part or an IPv6 literal).
    if (colon == std::string_view::npos || (at != std::string_view::npos && at < colon)) return value;
    if (lowercase_ascii(value.substr(0, colon)) == "smtp") return value.substr(colon + 1);
    return std::nullopt;
}

void Membership::assign(Group g, const std::vector<std::string>& raw_dns) {
    auto& members = of(g);
    members.clear();
    members.reserve(raw_dns.size());
    for (const auto& dn : raw_dns) members.push_back(hash128(normalize_dn(dn)));
    std::sort(members.begin(), members.end());
}

void Membership::add(Group g, std::string_view raw_dn) {
    auto& members = of(g);
    const Hash128 h = hash128(normalize_dn(raw_dn));
    members.insert(std::upper_bound(members.begin(), members.end(), h), h);
}

void Membership::remove(Group g, std::string_view raw_dn) {
    auto& members = of(g);
    const auto it = std::lower_bound(members.begin(), members.end(), hash128(normalize_dn(raw_dn)));
    if (it != members.end() && *it == hash128(normalize_dn(raw_dn))) members.erase(it);
}

bool Membership::contains(Group g, std::string_view dn) const {
    return std::binary_search(of(g).begin(), of(g).end(), hash128(dn));
}

std::uint64_t Membership::fingerprint() const {
    std::uint64_t h = kFnvOffset;
    const auto mix = [&h](std::uint64_t v) {
        char bytes[8];
        for (int i = 0; i < 8; ++i, v >>= 8) bytes[i] = static_cast<char>(v & 0xff);
        h = fnv1a64(std::string_view(bytes, sizeof bytes), h);
    };
    for (const auto& m : migrated_) mix(m.a), mix(m.b);
    mix(0);
    for (const auto& m : dual_) mix(m.a), mix(m.b);
    return h;
}

std::vector<std::string> group_member_values(const Entry& group) {
    std::vector<std::string> out;
    for (const char* attribute : {"member", "uniquemember"}) {
        const auto* values = group.values(attribute);
        if (!values) continue;
        for (std::string_view v : *values) {
            // uniqueMember is a DN optionally followed by "#'0101'B" (RFC 4517 3.3.21).
            if (std::string_view(attribute) == "uniquemember") {
                const auto hash = v.rfind('#');
                if (hash != std::string_view::npos && v.size() > hash + 2 && v[hash + 1] == '\'' && v.back() == 'B')
                    v = v.substr(0, hash);
            }
            out.emplace_back(v);
        }
    }
    sort_unique(out);
    return out;
}

std::vector<std::string> group_attributes() { return {"member", "uniqueMember"}; }

std::vector<std::string> person_attributes(const DirectoryConfig& config) {
    std::vector<std::string> out{config.address_attribute};
    for (const auto& a : config.alias_attributes) out.push_back(a);
    for (const auto* a : {&config.state_attribute, &config.target_attribute, &config.batch_attribute})
        if (!a->empty()) out.push_back(*a);
    out.push_back("memberOf");
    out.push_back("entryUUID");
    sort_unique(out);
    return out;
}

Classified classify(const Config& config, const Entry& entry, const Membership& membership) {
    const DirectoryConfig& d = config.directory;
    Classified result;
    const auto* addresses = entry.values(d.address_attribute);
    if (!addresses || addresses->empty()) {
        result.skipped = fmt::format("no {}", d.address_attribute);
        return result;
    }
    DirectoryUser user;
    std::vector<std::string> extra_addresses;
    for (const auto& value : *addresses) {
        const auto smtp = smtp_value(value);
        if (!smtp) continue;
        auto key = admin_user_key(config, *smtp);
        if (const auto* error = std::get_if<KeyError>(&key)) {
            // Said with the entry's DN, as the user may have no other address to be named by.
            if (const auto why = malformed_address(config, *smtp, *error))
                result.warnings.push_back(
                    fmt::format("{}: a value of {} ignored: {}", printable(entry.dn), d.address_attribute, *why));
            continue;
        }
        if (user.key.empty()) user.key = std::get<std::string>(std::move(key));
        else extra_addresses.push_back(std::get<std::string>(std::move(key)));
    }
    if (user.key.empty()) {
        result.skipped = fmt::format("{} '{}' is not in a managed domain", d.address_attribute,
                                     printable(addresses->front()));
        return result;
    }
    user.dn = normalize_dn(entry.dn);
    if (const auto* uuid = entry.values("entryuuid"); uuid && !uuid->empty()) user.entry_uuid = lowercase_ascii(uuid->front());

    if (!d.state_attribute.empty()) {
        const auto* values = entry.values(d.state_attribute);
        if (values && !values->empty()) {
            std::optional<State> state;
            for (const auto& value : *values) {
                const auto s = parse_state(value);
                if (!s) {
                    user.keep_routing = true;
                    result.warnings.push_back(fmt::format("{}: {} '{}' is not source, migrated or dual: state kept as it is",
                                                          user.key, d.state_attribute, printable(value)));
                    break;
                }
                if (state && *state != *s) {
                    // The server may send the values in any order: taking the first would let
                    // two relays route the user differently.
                    user.keep_routing = true;
                    result.warnings.push_back(disagreeing_values(user.key, d.state_attribute, *values, "state"));
                    break;
                }
                state = s;
            }
            if (!user.keep_routing) user.state = *state;
        }
    } else if (membership.contains(Membership::Group::dual, user.dn) || member_of(entry, d.dual_group)) {
        user.state = State::dual;
    } else if (membership.contains(Membership::Group::migrated, user.dn) || member_of(entry, d.migrated_group)) {
        user.state = State::migrated;
    }

    if (!d.target_attribute.empty()) {
        user.target = std::string();
        const auto* values = entry.values(d.target_attribute);
        if (values && !values->empty()) {
            for (const auto& value : *values) {
                const auto smtp = smtp_value(value);
                auto t = admin_target(config, smtp ? *smtp : std::string_view(value));
                auto* ok = std::get_if<std::string>(&t);
                if (!ok) {
                    user.keep_routing = true;
                    result.warnings.push_back(fmt::format("{}: {} '{}': {}: routing kept as it is", user.key,
                                                          d.target_attribute, printable(value),
                                                          std::get<KeyError>(t).reason));
                    break;
                }
                // One mailbox spelt in two cases (the new system folds them) is one target: the
                // smallest spelling, whatever order the server sends them in.
                if (&value != &values->front()) {
                    if (fold_case(*ok) != fold_case(*user.target)) {
                        user.keep_routing = true;
                        result.warnings.push_back(disagreeing_values(user.key, d.target_attribute, *values, "routing"));
                        break;
                    }
                    if (*ok >= *user.target) continue;
                }
                user.target = std::move(*ok);
            }
        }
    }
    if (!d.batch_attribute.empty()) {
        user.batch = std::string();
        const auto* values = entry.values(d.batch_attribute);
        if (values && !values->empty()) {
            const std::string& b = values->front();
            const bool ok = b.size() <= 64 && std::all_of(b.begin(), b.end(), [](char c) {
                return static_cast<unsigned char>(c) >= 0x20 && c != 0x7f;
            });
            if (std::any_of(values->begin(), values->end(), [&](const std::string& v) { return v != b; })) {
                user.batch.reset();
                result.warnings.push_back(disagreeing_values(user.key, d.batch_attribute, *values, "batch"));
            }
            else if (ok) user.batch = b;
            else result.warnings.push_back(fmt::format("{}: {} is not a batch name (printable, at most 64 bytes): ignored",
                                                       user.key, d.batch_attribute));
        }
    }

    user.aliases = std::move(extra_addresses);
    for (const auto& attribute : d.alias_attributes) {
        const auto* values = entry.values(attribute);
        if (!values) continue;
        for (const auto& value : *values) {
            const auto smtp = smtp_value(value);
            if (!smtp) continue;
            auto key = admin_user_key(config, *smtp);
            // Addresses outside the managed domains (contoso.onmicrosoft.com, another
            // organisation's) are normal in alias attributes: not ours to route.
            if (auto* k = std::get_if<std::string>(&key)) user.aliases.push_back(std::move(*k));
        }
    }
    sort_unique(user.aliases);
    user.aliases.erase(std::remove(user.aliases.begin(), user.aliases.end(), user.key), user.aliases.end());
    result.user = std::move(user);
    return result;
}

}  // namespace coexist::directory
