// Fuzz target: the policy delegation request parser. Whole and split feeds must agree, every
// read must make progress, and the attribute limit must hold.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chunked_feed.hpp"
#include "policy_request.hpp"

namespace {

using coexist::test::feed_in_chunks;
using coexist::test::require_split_agrees;

constexpr std::size_t kMaxLine = 512;
constexpr unsigned kMaxAttributes = 20;

std::vector<std::string> parse(std::string_view input, std::size_t chunk, bool& failed) {
    coexist::policyd::PolicyRequestParser parser(kMaxLine, kMaxAttributes);
    std::vector<std::string> out;
    failed = feed_in_chunks(parser, input, chunk, [&] {
        const auto& q = parser.request();
        if (q.attribute_count > kMaxAttributes) __builtin_trap();
        out.push_back(q.protocol_state + "|" + q.recipient + "|" + q.queue_id + "|" + q.request);
    });
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    require_split_agrees(data, size, parse);
    return 0;
}
