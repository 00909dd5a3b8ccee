// Fuzz target: recipient strings as Postfix hands them over, parsed and split.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "coexist/address.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    if (auto a = coexist::parse_address(input)) {
        // Invariants every caller relies on.
        if (a->local.empty() || a->domain.empty() || a->local.size() + a->domain.size() + 1 > coexist::kMaxAddressLength + 2)
            __builtin_trap();
        const auto part = coexist::split_extension(a->local, "+-");
        if (part.base.size() + part.extension.size() != a->local.size()) __builtin_trap();
        if (coexist::lowercase_ascii(a->domain) != a->domain) __builtin_trap();
    }
    return 0;
}
