// Netstrings (djb; socketmap_table(5)): "<decimal length>:<bytes>,". The decoder is incremental:
// it is fed whatever a read() returned, one byte or many kilobytes, and never buffers more than
// one payload of at most `max_payload` bytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace coexist::policyd {

class NetstringDecoder {
public:
    enum class Status {
        need_more,  // all input consumed, no complete netstring yet
        complete,   // payload() holds one netstring, valid until the next feed()
        error,      // framing is broken (error() says why); the stream cannot be resynchronised
    };
    struct Result {
        Status status;
        std::size_t consumed;  // bytes of the input used, never past the end of one netstring
    };

    explicit NetstringDecoder(std::size_t max_payload) : max_payload_(max_payload) {}

    Result feed(std::string_view input);
    const std::string& payload() const { return payload_; }
    std::string_view error() const { return error_; }
    // Ready for the next netstring.
    void reset();
    // Inside a netstring (some but not all of its bytes seen).
    bool started() const { return phase_ != Phase::length || digits_ > 0; }

private:
    enum class Phase { length, payload, comma, failed };
    Result fail(std::string_view why, std::size_t consumed);

    std::size_t max_payload_;
    Phase phase_ = Phase::length;
    std::size_t length_ = 0;
    std::size_t digits_ = 0;
    std::string payload_;
    std::string_view error_;
};

// "<len>:payload,"
std::string encode_netstring(std::string_view payload);
// The same, appended to `out` (a connection's reply buffer: no allocation once it has grown).
void append_netstring(std::string& out, std::string_view payload);

}  // namespace coexist::policyd
