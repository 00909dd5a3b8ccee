// Feeding a byte stream to an incremental parser the way the network delivers it: in pieces of
// one read size. The one driver for the framing unit tests (tests/policyd) and the fuzz targets
// (tests/fuzz), so both hold the parsers (NetstringDecoder, PolicyRequestParser) to the same
// promises. A broken promise throws std::logic_error: Catch2 reports it as a failed test, and
// under libFuzzer the uncaught exception aborts, which is a crash with its input kept.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

namespace coexist::test {

// The read sizes every framing test runs at (postfix-mta-sts-resolver's set): one big read,
// a few medium ones, and a byte at a time.
inline const std::vector<std::size_t> kReadSizes{4096, 128, 16, 1};

// Calls `consume(piece)` for consecutive pieces of `stream` of at most `read_size` bytes (at
// least 1); stops early when consume returns false.
template <typename Consume>
void feed_in_pieces(std::string_view stream, std::size_t read_size, Consume consume) {
    if (read_size == 0) throw std::logic_error("feed_in_pieces: read size 0");
    while (!stream.empty()) {
        const std::string_view piece = stream.substr(0, read_size);
        stream.remove_prefix(piece.size());
        if (!consume(piece)) return;
    }
}

// Feeds `parser` (feed(string_view) -> {status, consumed}, status need_more/complete/error)
// `read_size` bytes per read and checks what every such parser promises: it never consumes
// past what it was given, and a read that completes nothing is consumed whole. Calls
// on_complete() per result. Returns true when the parser reported a framing error (the stream
// ends there), false when the stream ran out.
template <typename Parser, typename OnComplete>
bool feed_in_chunks(Parser& parser, std::string_view stream, std::size_t read_size, OnComplete on_complete) {
    bool failed = false;
    feed_in_pieces(stream, read_size, [&](std::string_view piece) {
        while (!piece.empty()) {
            const auto r = parser.feed(piece);
            if (r.consumed > piece.size()) throw std::logic_error("parser consumed past its input");
            piece.remove_prefix(r.consumed);
            using Status = decltype(r.status);
            if (r.status == Status::complete) {
                on_complete();
            } else if (r.status == Status::error) {
                failed = true;
                return false;
            } else if (!piece.empty()) {
                throw std::logic_error("parser wants more but left part of its input");
            }
        }
        return true;
    });
    return failed;
}

// For fuzz targets: the input's first byte picks a read size of 1..17; the rest is the stream.
// `parse(stream, read_size, failed)` must give the same results and the same end for one big
// read and for small ones: framing that depends on how the kernel split the bytes is a bug
// waiting for load. Returns the results of the whole read (for further checks), empty when
// there is no stream.
template <typename Parse>
auto require_split_agrees(const unsigned char* data, std::size_t size, Parse parse)
    -> decltype(parse(std::string_view(), std::size_t{}, std::declval<bool&>())) {
    if (size == 0) return {};
    const std::size_t read_size = data[0] % 17 + 1;
    const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
    bool whole_failed = false, split_failed = false;
    auto whole = parse(stream, stream.size() + 1, whole_failed);
    const auto split = parse(stream, read_size, split_failed);
    if (whole != split || whole_failed != split_failed) throw std::logic_error("whole and split reads disagree");
    return whole;
}

}  // namespace coexist::test
