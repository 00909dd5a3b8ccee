// What coexist-map prints for an admin's terminal (maps/tool/terminal_safe_stream): control
// characters from anything quoted in a message become '?', whatever writes the message.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>

#include "terminal_safe_stream.hpp"

using coexist::tool::TerminalSafeStream;

namespace {

std::string through_filter(const std::vector<std::string>& pieces) {
    std::ostringstream sink;
    {
        const TerminalSafeStream safe(sink);
        sink << std::unitbuf;  // as std::cerr: a flush after every insertion
        for (const auto& p : pieces) sink << p;
    }
    return sink.str();
}

}  // namespace

TEST_CASE("standard error: control characters become '?', text and UTF-8 pass") {
    CHECK(through_filter({"coexist-map: f\x1b[31mR\a.csv: cannot open\n"}) == "coexist-map: f?[31mR?.csv: cannot open\n");
    CHECK(through_filter({"a\tb\r\x7f\n"}) == "a\tb??\n");
    CHECK(through_filter({"j\xc3\xbcrgen@m\xc3\xbcller.de \xe2\x82\xac\n"}) == "j\xc3\xbcrgen@m\xc3\xbcller.de \xe2\x82\xac\n");
    // U+009B (CSI in UTF-8: C2 9B) is a control a terminal obeys; U+00A9 (C2 A9) is a letter.
    CHECK(through_filter({"x\xc2\x9b" "31m \xc2\xa9"}) == "x?31m \xc2\xa9");
    // Split between two writes (std::cerr flushes after each): still one '?'.
    CHECK(through_filter({"x\xc2", "\x9b" "2J"}) == "x?2J");
    CHECK(through_filter({"x\xc2", "\xc2", "\xa9"}) == "x\xc2\xc2\xa9");
    // A lead byte at the very end is written when the filter ends, not lost.
    CHECK(through_filter({"end\xc2"}) == "end\xc2");
}
