// Fuzz target: configuration files. Either a Config or a ConfigError, never a crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "coexist/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    try {
        const coexist::Config c = coexist::parse_config(input, "fuzz.ini");
        if (c.domains.empty()) __builtin_trap();
        for (const auto& d : c.domains)
            if (d.routing_domain.empty() || c.find_domain(d.routing_domain)) __builtin_trap();
    } catch (const coexist::ConfigError&) {
    }
    return 0;
}
