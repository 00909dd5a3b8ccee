// The benchmark's users, as the bench's null servers know them without a map: the rule
// bench/bench_map.py writes into every map (migrated(n)), read back from an address alone.
#pragma once

#include <charconv>
#include <string_view>

namespace coexist::bench {

inline constexpr std::string_view kUserPrefix = "user";
inline constexpr std::string_view kManagedDomain = "@contoso.com";
inline constexpr std::string_view kRoutingDomain = "@o365.contoso.com";

// Whether `address` (no brackets) is userN@contoso.com with N % 10 == 0, a migrated user of the
// bench's maps. Anything else is not migrated.
inline bool migrated(std::string_view address) {
    if (address.size() <= kUserPrefix.size() + kManagedDomain.size() ||
        address.substr(0, kUserPrefix.size()) != kUserPrefix)
        return false;
    if (address.substr(address.size() - kManagedDomain.size()) != kManagedDomain) return false;
    const std::string_view digits =
        address.substr(kUserPrefix.size(), address.size() - kUserPrefix.size() - kManagedDomain.size());
    unsigned long n = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
    return ec == std::errc() && end == digits.data() + digits.size() && n % 10 == 0;
}

}  // namespace coexist::bench
