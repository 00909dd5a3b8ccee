#include "netstring.hpp"

#include <algorithm>
#include <charconv>
#include <iterator>
#include <limits>

namespace coexist::policyd {

NetstringDecoder::Result NetstringDecoder::fail(std::string_view why, std::size_t consumed) {
    phase_ = Phase::failed;
    error_ = why;
    return {Status::error, consumed};
}

void NetstringDecoder::reset() {
    phase_ = Phase::length;
    length_ = 0;
    digits_ = 0;
    payload_.clear();
    error_ = {};
}

NetstringDecoder::Result NetstringDecoder::feed(std::string_view input) {
    std::size_t pos = 0;
    while (pos < input.size()) {
        switch (phase_) {
        case Phase::failed:
            return {Status::error, pos};
        case Phase::length: {
            const char c = input[pos];
            if (c == ':') {
                if (digits_ == 0) return fail("netstring without a length", pos + 1);
                ++pos;
                phase_ = length_ == 0 ? Phase::comma : Phase::payload;
                payload_.clear();
                payload_.reserve(length_);
                break;
            }
            if (c < '0' || c > '9') return fail("netstring length is not a decimal number", pos + 1);
            // Checked digit by digit, so "1000000000:" is refused at its fifth digit: we never
            // wait for (or allocate) more than max_payload bytes.
            length_ = length_ * 10 + static_cast<std::size_t>(c - '0');
            ++digits_;
            ++pos;
            if (length_ > max_payload_) return fail("netstring longer than max_request_bytes", pos);
            break;
        }
        case Phase::payload: {
            const std::size_t want = length_ - payload_.size();
            const std::size_t take = std::min(want, input.size() - pos);
            payload_.append(input.substr(pos, take));
            pos += take;
            if (payload_.size() == length_) phase_ = Phase::comma;
            break;
        }
        case Phase::comma:
            if (input[pos] != ',') return fail("netstring length does not match its data (no ',' after it)", pos + 1);
            ++pos;
            phase_ = Phase::length;  // reset() clears the rest once the caller took the payload
            length_ = 0;
            digits_ = 0;
            return {Status::complete, pos};
        }
    }
    if (phase_ == Phase::failed) return {Status::error, pos};
    return {Status::need_more, pos};
}

std::string encode_netstring(std::string_view payload) {
    std::string out;
    append_netstring(out, payload);
    return out;
}

void append_netstring(std::string& out, std::string_view payload) {
    char digits[std::numeric_limits<std::size_t>::digits10 + 1];
    const auto [end, ec] = std::to_chars(std::begin(digits), std::end(digits), payload.size());
    (void)ec;  // cannot fail: the buffer holds any size_t
    out.append(digits, end);
    out += ':';
    out.append(payload);
    out += ',';
}

}  // namespace coexist::policyd
