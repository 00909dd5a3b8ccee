#include "policy_request.hpp"

#include <cstring>

namespace coexist::policyd {

void PolicyRequest::clear() {
    request.clear();
    protocol_state.clear();
    recipient.clear();
    queue_id.clear();
    client_address.clear();
    attribute_count = 0;
}

PolicyRequestParser::Result PolicyRequestParser::fail(std::string_view why, std::size_t consumed) {
    failed_ = true;
    error_ = why;
    return {Status::error, consumed};
}

bool PolicyRequestParser::take_line(std::string_view line) {
    // Postfix ends lines with "\n"; tolerate "\r\n" from people typing at a socket.
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
        if (request_.attribute_count == 0) {
            error_ = "empty request";
            return false;
        }
        request_done_ = true;
        return true;
    }
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) {
        error_ = "request line is not name=value";
        return false;
    }
    if (++request_.attribute_count > max_attributes_) {
        error_ = "more attributes than max_attributes";
        return false;
    }
    const std::string_view name = line.substr(0, eq);
    const std::string_view value = line.substr(eq + 1);
    // Only what the decision and its log line need is kept; the count still covers the rest.
    if (name == "request") request_.request = value;
    else if (name == "protocol_state") request_.protocol_state = value;
    else if (name == "recipient") request_.recipient = value;
    else if (name == "queue_id") request_.queue_id = value;
    else if (name == "client_address") request_.client_address = value;
    return true;
}

PolicyRequestParser::Result PolicyRequestParser::feed(std::string_view input) {
    if (failed_) return {Status::error, 0};
    if (request_done_) {
        request_.clear();
        request_done_ = false;
    }
    // One search for a NUL byte in all of the input rather than one per line (a request is some
    // 30 short lines); only a line that reaches it is refused.
    const void* nul_at = std::memchr(input.data(), '\0', input.size());
    const std::size_t nul = nul_at ? static_cast<std::size_t>(static_cast<const char*>(nul_at) - input.data())
                                   : input.size();
    std::size_t pos = 0;
    while (pos < input.size()) {
        const void* nl = std::memchr(input.data() + pos, '\n', input.size() - pos);
        const std::size_t end = nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - input.data())
                                   : input.size();
        // The bound is checked before copying, so an endless line costs at most one line of memory.
        if (line_.size() + (end - pos) > max_line_bytes_)
            return fail("request line longer than max_request_bytes", end);
        if (nul < end) return fail("NUL byte in request", nl ? end + 1 : end);
        const std::string_view piece = input.substr(pos, end - pos);
        if (!nl) {
            line_.append(piece);
            return {Status::need_more, input.size()};
        }
        pos = end + 1;
        // A line wholly in this input is read where it is; one begun in an earlier read is
        // completed in line_.
        bool ok;
        if (line_.empty()) {
            ok = take_line(piece);
        } else {
            line_.append(piece);
            ok = take_line(line_);
            line_.clear();
        }
        if (!ok) return fail(error_, pos);
        if (request_done_) return {Status::complete, pos};
    }
    return {Status::need_more, pos};
}

}  // namespace coexist::policyd
