// printable(): the one sanitizer every program puts untrusted text through before a log line or
// a reply (maps/include/coexist/log_text.hpp).
#include <catch2/catch.hpp>
#include <string>

#include "coexist/log_text.hpp"

using coexist::kMaxLoggedFieldBytes;
using coexist::printable;

TEST_CASE("printable ASCII passes unchanged") {
    CHECK(printable("Ann+news@Contoso.com, detail=\"x\" ~") == "Ann+news@Contoso.com, detail=\"x\" ~");
    CHECK(printable("") == "");
}

TEST_CASE("control, DEL and 8-bit bytes become '?': no forged line, no terminal escapes") {
    CHECK(printable("a\r\nfake: line") == "a??fake: line");
    CHECK(printable(std::string("\x00\x1b[31m\x7f", 7)) == "??[31m?");
    CHECK(printable("j\xc3\xb6rg") == "j??rg");
}

TEST_CASE("long text is cut at the bound and marked") {
    const std::string long_text(kMaxLoggedFieldBytes + 1, 'x');
    CHECK(printable(long_text) == std::string(kMaxLoggedFieldBytes, 'x') + "...");
    CHECK(printable(std::string(kMaxLoggedFieldBytes, 'x')) == std::string(kMaxLoggedFieldBytes, 'x'));
    CHECK(printable("abcdef", 3) == "abc...");
    CHECK(printable("abc", 0) == "...");
}
