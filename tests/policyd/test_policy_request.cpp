#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <string>
#include <vector>

#include "policy_request.hpp"
#include "../fuzz/chunked_feed.hpp"

using namespace coexist::policyd;
using coexist::test::feed_in_chunks;
using coexist::test::kReadSizes;

namespace {

// What Postfix 3.7 sends at RCPT (SMTPD_POLICY_README), in its order.
std::string rcpt_request(const std::string& recipient, const std::string& queue_id = "") {
    return "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
           "client_address=127.0.0.1\nclient_name=localhost\nclient_port=41234\n"
           "reverse_client_name=localhost\nserver_address=127.0.0.1\nserver_port=25\n"
           "helo_name=client.example\nsender=someone@example.org\nrecipient=" + recipient + "\n"
           "recipient_count=0\nqueue_id=" + queue_id + "\ninstance=1a2b.5f3c.1\nsize=0\n"
           "etrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\n"
           "ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n"
           "encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n";
}

struct Parsed {
    std::vector<PolicyRequest> requests;
    bool failed = false;
    std::string error;
};

Parsed parse_stream(std::string_view stream, std::size_t read_size, std::size_t max_line = 4096,
                    unsigned max_attributes = 100) {
    PolicyRequestParser parser(max_line, max_attributes);
    Parsed out;
    out.failed = feed_in_chunks(parser, stream, read_size, [&] { out.requests.push_back(parser.request()); });
    if (out.failed) out.error = parser.error();
    return out;
}

}  // namespace

TEST_CASE("policy requests parse the same at every read size") {
    const std::string stream = rcpt_request("Ann+news@Contoso.com") + rcpt_request("bob@contoso.com", "3F2A1C") +
                               "request=smtpd_access_policy\nprotocol_state=DATA\nrecipient_count=2\n\n";
    const auto read_size = GENERATE(from_range(kReadSizes));
    CAPTURE(read_size);
    const auto parsed = parse_stream(stream, read_size);
    REQUIRE_FALSE(parsed.failed);
    REQUIRE(parsed.requests.size() == 3);
    CHECK(parsed.requests[0].protocol_state == "RCPT");
    CHECK(parsed.requests[0].recipient == "Ann+news@Contoso.com");  // case preserved
    CHECK(parsed.requests[0].queue_id.empty());
    CHECK(parsed.requests[0].request == "smtpd_access_policy");
    CHECK(parsed.requests[0].client_address == "127.0.0.1");
    CHECK(parsed.requests[0].attribute_count == 29);
    CHECK(parsed.requests[1].recipient == "bob@contoso.com");
    CHECK(parsed.requests[1].queue_id == "3F2A1C");
    CHECK(parsed.requests[2].protocol_state == "DATA");
    CHECK(parsed.requests[2].recipient.empty());  // nothing carried over from the previous request
    CHECK(parsed.requests[2].attribute_count == 3);
}

TEST_CASE("values may contain '=' and be empty; CRLF is tolerated") {
    const auto parsed = parse_stream("recipient=a=b@contoso.com\r\nsender=\r\nprotocol_state=RCPT\r\n\r\n", 1);
    REQUIRE_FALSE(parsed.failed);
    REQUIRE(parsed.requests.size() == 1);
    CHECK(parsed.requests[0].recipient == "a=b@contoso.com");
    CHECK(parsed.requests[0].protocol_state == "RCPT");
}

TEST_CASE("protocol violations are errors at every read size") {
    struct Case {
        std::string stream;
        std::string error_contains;
    };
    const auto c = GENERATE(values<Case>({
        {"no equals sign\n\n", "name=value"},
        {"=value\n\n", "name=value"},
        {"\n", "empty request"},
        {std::string("recipient=a\0b@contoso.com\n\n", 27), "NUL"},
        {"recipient=" + std::string(5000, 'a') + "\n\n", "longer than"},
        {std::string(5000, 'x'), "longer than"},  // no newline at all: refused at the bound
        {std::string("\x01\x02\xfe\xff\n\n", 6), "name=value"},
    }));
    const auto read_size = GENERATE(from_range(kReadSizes));
    CAPTURE(read_size);
    const auto parsed = parse_stream(c.stream, read_size);
    CHECK(parsed.failed);
    CHECK_THAT(parsed.error, Catch::Contains(c.error_contains));
    CHECK(parsed.requests.empty());
}

TEST_CASE("a NUL byte in a later request leaves the requests before it whole") {
    // The parser looks for a NUL once per read, across requests: only the line that holds it fails.
    const std::string stream = rcpt_request("ann@contoso.com") + std::string("recipient=b\0b@contoso.com\n\n", 27);
    const auto read_size = GENERATE(from_range(kReadSizes));
    CAPTURE(read_size);
    const auto parsed = parse_stream(stream, read_size);
    CHECK(parsed.failed);
    CHECK_THAT(parsed.error, Catch::Contains("NUL"));
    REQUIRE(parsed.requests.size() == 1);
    CHECK(parsed.requests[0].recipient == "ann@contoso.com");
}

TEST_CASE("the line bound counts the line, not the request") {
    // 100 lines of 50 bytes is fine with a 64-byte line limit.
    std::string stream;
    for (int i = 0; i < 100; ++i) stream += "attr" + std::to_string(i) + "=" + std::string(40, 'v') + "\n";
    stream += "\n";
    const auto ok = parse_stream(stream, 16, 64, 100);
    CHECK_FALSE(ok.failed);
    CHECK(ok.requests.size() == 1);
    const auto line_too_long = parse_stream("a=" + std::string(63, 'v') + "\n\n", 16, 64, 100);
    CHECK(line_too_long.failed);
    const auto exactly = parse_stream("a=" + std::string(62, 'v') + "\n\n", 16, 64, 100);
    CHECK_FALSE(exactly.failed);
}

TEST_CASE("more than max_attributes in one request is an error") {
    std::string stream;
    for (int i = 0; i < 11; ++i) stream += fmt::format("a{}=x\n", i);
    stream += "\n";
    CHECK_FALSE(parse_stream(stream, 128, 4096, 11).failed);
    const auto too_many = parse_stream(stream, 128, 4096, 10);
    CHECK(too_many.failed);
    CHECK_THAT(too_many.error, Catch::Contains("max_attributes"));
}

TEST_CASE("the attribute count restarts with every request") {
    std::string one;
    for (int i = 0; i < 8; ++i) one += fmt::format("a{}=x\n", i);
    one += "\n";
    const auto parsed = parse_stream(one + one + one, 4096, 4096, 10);
    CHECK_FALSE(parsed.failed);
    CHECK(parsed.requests.size() == 3);
}

TEST_CASE("started() tells a half-received request from a clean boundary") {
    PolicyRequestParser parser(4096, 100);
    CHECK_FALSE(parser.started());
    CHECK(parser.feed("protocol_state=RC").status == PolicyRequestParser::Status::need_more);
    CHECK(parser.started());
    CHECK(parser.feed("PT\n\n").status == PolicyRequestParser::Status::complete);
    CHECK_FALSE(parser.started());
}
