// Fuzz target: the socketmap netstring decoder. The same bytes fed whole and fed in small reads
// must give the same netstrings and the same end (the framing must not depend on read sizes),
// and the decoder must always make progress and respect its payload limit.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chunked_feed.hpp"
#include "netstring.hpp"

namespace {

constexpr std::size_t kMaxPayload = 256;

std::vector<std::string> decode(std::string_view input, std::size_t chunk, bool& failed) {
    coexist::policyd::NetstringDecoder decoder(kMaxPayload);
    std::vector<std::string> out;
    failed = feed_in_chunks(decoder, input, chunk, [&] {
        if (decoder.payload().size() > kMaxPayload) __builtin_trap();
        out.push_back(decoder.payload());
        decoder.reset();
    });
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::size_t chunk = data[0] % 17 + 1;
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    bool whole_failed = false, split_failed = false;
    const auto whole = decode(input, input.size() + 1, whole_failed);
    const auto split = decode(input, chunk, split_failed);
    if (whole != split || whole_failed != split_failed) __builtin_trap();
    for (const auto& p : whole) {
        const std::string again = coexist::policyd::encode_netstring(p);
        bool f = false;
        if (decode(again, again.size(), f) != std::vector<std::string>{p} || f) __builtin_trap();
    }
    return 0;
}
