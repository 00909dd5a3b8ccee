// Feeds an incremental parser (NetstringDecoder, PolicyRequestParser) `chunk` bytes per read, as
// a socket would, and checks what every such parser promises: it never consumes past what it was
// given, and a read that completes nothing is consumed whole. Calls on_complete() per result.
// Returns true when the parser reported a framing error (the stream ends there).
#pragma once

#include <cstddef>
#include <string_view>
#include <utility>

template <typename Parser, typename OnComplete>
bool feed_in_chunks(Parser& parser, std::string_view input, std::size_t chunk, OnComplete on_complete) {
    for (std::size_t pos = 0; pos < input.size();) {
        std::string_view piece = input.substr(pos, chunk);
        while (!piece.empty()) {
            const auto r = parser.feed(piece);
            if (r.consumed > piece.size()) __builtin_trap();
            pos += r.consumed;
            piece.remove_prefix(r.consumed);
            using Status = decltype(r.status);
            if (r.status == Status::complete) on_complete();
            else if (r.status == Status::error) return true;
            else if (!piece.empty()) __builtin_trap();
        }
    }
    return false;
}

// The fuzz input's first byte picks a read size of 1..17; the rest is the stream. `parse(input,
// chunk, failed)` must give the same results and the same end for one big read and for small
// ones: framing that depends on how the kernel split the bytes is a bug waiting for load.
// Returns the results of the whole read (for further checks), empty when there is no stream.
template <typename Parse>
auto require_split_agrees(const unsigned char* data, std::size_t size, Parse parse)
    -> decltype(parse(std::string_view(), std::size_t{}, std::declval<bool&>())) {
    if (size == 0) return {};
    const std::size_t chunk = data[0] % 17 + 1;
    const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
    bool whole_failed = false, split_failed = false;
    auto whole = parse(input, input.size() + 1, whole_failed);
    const auto split = parse(input, chunk, split_failed);
    if (whole != split || whole_failed != split_failed) __builtin_trap();
    return whole;
}
