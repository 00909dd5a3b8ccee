// Feeding a byte stream to an incremental parser the way the network delivers it: in pieces of
// one read size. Framing tests run every case at each of kReadSizes.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace coexist::policyd::test {

inline const std::vector<std::size_t> kReadSizes{4096, 128, 16, 1};

// Calls `consume(piece)` for consecutive pieces of `stream` of at most `read_size` bytes; stops
// early when consume returns false.
template <typename Consume>
void feed_in_pieces(std::string_view stream, std::size_t read_size, Consume consume) {
    while (!stream.empty()) {
        const std::string_view piece = stream.substr(0, read_size);
        stream.remove_prefix(piece.size());
        if (!consume(piece)) return;
    }
}

}  // namespace coexist::policyd::test
