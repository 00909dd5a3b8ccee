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
    if (size == 0) return 0;
    const std::size_t chunk = data[0] % 17 + 1;
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    bool whole_failed = false, split_failed = false;
    const auto whole = parse(input, input.size() + 1, whole_failed);
    const auto split = parse(input, chunk, split_failed);
    if (whole != split || whole_failed != split_failed) __builtin_trap();
    return 0;
}
