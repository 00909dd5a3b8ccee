#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "netstring.hpp"
#include "../fuzz/chunked_feed.hpp"

using namespace coexist::policyd;
using coexist::test::feed_in_chunks;
using coexist::test::kReadSizes;

namespace {

struct Decoded {
    std::vector<std::string> payloads;
    bool failed = false;
    std::string error;
};

Decoded decode_stream(std::string_view stream, std::size_t read_size, std::size_t max_payload = 4096) {
    NetstringDecoder decoder(max_payload);
    Decoded out;
    out.failed = feed_in_chunks(decoder, stream, read_size, [&] { out.payloads.push_back(decoder.payload()); });
    if (out.failed) out.error = decoder.error();
    return out;
}

}  // namespace

TEST_CASE("encode_netstring frames a payload") {
    CHECK(encode_netstring("") == "0:,");
    CHECK(encode_netstring("virtual ann@contoso.com") == "23:virtual ann@contoso.com,");
    CHECK(encode_netstring(std::string(1000, 'x')) == "1000:" + std::string(1000, 'x') + ",");
}

TEST_CASE("netstrings decode the same at every read size") {
    const std::string big(3000, 'k');
    const std::vector<std::string> payloads{"virtual ann@contoso.com", "", "recipients x@contoso.com",
                                            std::string("bin\0ary,:", 9), "virtual " + big};
    std::string stream;
    for (const auto& p : payloads) stream += encode_netstring(p);
    const auto read_size = GENERATE(from_range(kReadSizes));
    CAPTURE(read_size);
    const auto decoded = decode_stream(stream, read_size);
    CHECK_FALSE(decoded.failed);
    CHECK(decoded.payloads == payloads);
}

TEST_CASE("a partial netstring waits for the rest") {
    NetstringDecoder decoder(100);
    CHECK_FALSE(decoder.started());
    auto r = decoder.feed("5:hel");
    CHECK(r.status == NetstringDecoder::Status::need_more);
    CHECK(r.consumed == 5);
    CHECK(decoder.started());
    r = decoder.feed("lo");
    CHECK(r.status == NetstringDecoder::Status::need_more);
    r = decoder.feed(",6:");
    CHECK(r.status == NetstringDecoder::Status::complete);
    CHECK(r.consumed == 1);  // stops at the end of one netstring
    CHECK(decoder.payload() == "hello");
    CHECK_FALSE(decoder.started());
}

TEST_CASE("broken framing is an error at every read size") {
    struct Case {
        std::string stream;
        std::string error_contains;
    };
    const auto c = GENERATE(values<Case>({
        {"x:abc,", "not a decimal"},
        {":abc,", "without a length"},
        {"3:abcd,", "does not match"},
        {"5:abc,1:x,", "does not match"},
        {"-1:a,", "not a decimal"},
        {"4097:", "longer than"},
        {std::string("\x00\xff\x13garbage", 10), "not a decimal"},
    }));
    const auto read_size = GENERATE(from_range(kReadSizes));
    CAPTURE(c.stream, read_size);
    const auto decoded = decode_stream(c.stream, read_size);
    CHECK(decoded.failed);
    CHECK_THAT(decoded.error, Catch::Contains(c.error_contains));
}

TEST_CASE("a huge announced length is refused before its data is awaited") {
    NetstringDecoder decoder(4096);
    const auto r = decoder.feed("1000000000:");
    CHECK(r.status == NetstringDecoder::Status::error);
    // Refused at the fifth digit: 10000 > 4096; nothing was allocated for the payload.
    CHECK(r.consumed == 5);
    CHECK(decoder.payload().capacity() < 4096);
}

TEST_CASE("a netstring of exactly max_payload bytes is accepted, one more is not") {
    const auto ok = decode_stream(encode_netstring(std::string(256, 'a')), 16, 256);
    CHECK_FALSE(ok.failed);
    REQUIRE(ok.payloads.size() == 1);
    const auto too_long = decode_stream(encode_netstring(std::string(257, 'a')), 16, 256);
    CHECK(too_long.failed);
}

TEST_CASE("after an error the decoder stays failed") {
    NetstringDecoder decoder(100);
    CHECK(decoder.feed("z").status == NetstringDecoder::Status::error);
    CHECK(decoder.feed("3:abc,").status == NetstringDecoder::Status::error);
}

TEST_CASE("append_netstring adds to what is there") {
    std::string out = "9:NOTFOUND ,";
    append_netstring(out, "OK ann@o365.contoso.com");
    append_netstring(out, "");
    CHECK(out == "9:NOTFOUND ,23:OK ann@o365.contoso.com,0:,");
    CHECK(encode_netstring(std::string(1234, 'x')).substr(0, 5) == "1234:");
}
