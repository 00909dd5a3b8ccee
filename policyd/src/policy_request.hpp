// The Postfix policy delegation request (SMTPD_POLICY_README "Protocol description"):
// "name=value" lines ended by an empty line. The parser is incremental, keeps only the attributes
// the decision needs, and enforces the two limits an attacker controls: the length of one line
// (max_request_bytes) and the number of attributes in one request (max_attributes).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace coexist::policyd {

struct PolicyRequest {
    std::string request;         // "smtpd_access_policy"
    std::string protocol_state;  // CONNECT, EHLO, MAIL, RCPT, DATA, END-OF-MESSAGE, ...
    std::string recipient;       // internal form, no <>, case preserved; set at RCPT
    std::string queue_id;        // empty at the first RCPT of a message (postfix-notes 1.2)
    std::string client_address;
    unsigned attribute_count = 0;

    // Empties every field but keeps the strings' capacity, so a long-lived connection parses
    // request after request without allocating (a new field must be cleared here too).
    void clear();
};

class PolicyRequestParser {
public:
    enum class Status { need_more, complete, error };
    struct Result {
        Status status;
        std::size_t consumed;  // never past the empty line that ends one request
    };

    PolicyRequestParser(std::size_t max_line_bytes, unsigned max_attributes)
        : max_line_bytes_(max_line_bytes), max_attributes_(max_attributes) {}

    // Consumes input up to the end of one request. After `complete`, request() holds it until
    // the next feed(). After `error`, the connection must be dropped: Postfix wants no reply to
    // a request the server could not understand ("log a warning and disconnect").
    Result feed(std::string_view input);
    const PolicyRequest& request() const { return request_; }
    std::string_view error() const { return error_; }
    bool started() const { return !line_.empty() || (!request_done_ && request_.attribute_count > 0); }

private:
    Result fail(std::string_view why, std::size_t consumed);
    // false on a protocol violation (error_ set)
    bool take_line(std::string_view line);

    std::size_t max_line_bytes_;
    unsigned max_attributes_;
    std::string line_;  // the partial line carried over between reads
    PolicyRequest request_;
    bool request_done_ = false;  // request_ is complete; cleared by the next feed()
    bool failed_ = false;
    std::string_view error_;
};

}  // namespace coexist::policyd
