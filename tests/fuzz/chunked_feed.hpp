// Feeds an incremental parser (NetstringDecoder, PolicyRequestParser) `chunk` bytes per read, as
// a socket would, and checks what every such parser promises: it never consumes past what it was
// given, and a read that completes nothing is consumed whole. Calls on_complete() per result.
// Returns true when the parser reported a framing error (the stream ends there).
#pragma once

#include <cstddef>
#include <string_view>

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
