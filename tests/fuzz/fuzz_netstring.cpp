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

using coexist::test::feed_in_chunks;
using coexist::test::require_split_agrees;

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
    // Every payload decoded must survive encode_netstring() and decoding again.
    for (const auto& p : require_split_agrees(data, size, decode)) {
        const std::string again = coexist::policyd::encode_netstring(p);
        bool f = false;
        if (decode(again, again.size(), f) != std::vector<std::string>{p} || f) __builtin_trap();
    }
    return 0;
}
