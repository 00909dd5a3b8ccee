#include <catch2/catch.hpp>

#include "coexist/address.hpp"

using namespace coexist;

TEST_CASE("parse_address strips brackets and lowercases the domain only") {
    auto a = parse_address("<Ann.Lee@CONTOSO.Com>");
    REQUIRE(a);
    CHECK(a->local == "Ann.Lee");
    CHECK(a->domain == "contoso.com");
    a = parse_address("  bob@contoso.com.  ");
    REQUIRE(a);
    CHECK(a->domain == "contoso.com");
}

TEST_CASE("parse_address keeps quoted local parts and splits at the last @") {
    auto a = parse_address(R"(<"john@home doe"@contoso.com>)");
    REQUIRE(a);
    CHECK(a->local == R"("john@home doe")");
    CHECK(a->domain == "contoso.com");
}

TEST_CASE("parse_address refuses what is not an address") {
    const char* bad = GENERATE("", "<>", "contoso.com", "@contoso.com", "ann@", "<ann@contoso.com",
                               "ann@contoso.com>", "ann@cont oso.com", "an n@contoso.com",
                               "ann@contoso..com", "ann@.contoso.com", "ann@b\xc3\xa9.com", "*",
                               "\"unterminated@contoso.com", "a<b@contoso.com");
    CAPTURE(bad);
    CHECK_FALSE(parse_address(bad));
}

TEST_CASE("parse_address rejects control bytes, accepts 8-bit local parts") {
    CHECK_FALSE(parse_address(std::string("ann\0x@contoso.com", 17)));
    CHECK_FALSE(parse_address("ann\r\n@contoso.com"));
    auto a = parse_address("j\xc3\xb6rg@contoso.com");
    REQUIRE(a);
    CHECK(a->local == "j\xc3\xb6rg");
    // Every single byte value in the local part: never a crash, control bytes refused.
    for (int b = 0; b < 256; ++b) {
        std::string s = "a";
        s.push_back(static_cast<char>(b));
        s += "@contoso.com";
        auto r = parse_address(s);
        if (b < 0x20 || b == 0x7f) CHECK_FALSE(r);
    }
}

TEST_CASE("parse_address bounds the length") {
    std::string local(kMaxAddressLength - 12, 'a');
    CHECK(parse_address(local + "@contoso.com"));
    CHECK_FALSE(parse_address(local + "x@contoso.com"));
    CHECK_FALSE(parse_address(std::string(1 << 20, 'a') + "@contoso.com"));
}

TEST_CASE("split_extension splits at the first delimiter character") {
    auto p = split_extension("ann+news+x", "+");
    CHECK(p.base == "ann");
    CHECK(p.extension == "+news+x");
    p = split_extension("ann-list", "+-");
    CHECK(p.base == "ann");
    CHECK(p.extension == "-list");
    p = split_extension("ann", "+");
    CHECK(p.base == "ann");
    CHECK(p.extension.empty());
    p = split_extension("+ann", "+");  // no base: not split
    CHECK(p.base == "+ann");
    p = split_extension("ann+x", "");
    CHECK(p.base == "ann+x");
}
