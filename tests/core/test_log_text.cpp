// printable(), loggable() and its field forms: the sanitizers every program puts untrusted text through before a
// reply or a log line (maps/include/coexist/log_text.hpp).
#include <catch2/catch.hpp>
#include <string>

#include "coexist/log_text.hpp"

using coexist::kMaxLoggedFieldBytes;
using coexist::loggable;
using coexist::loggable_bracketed;
using coexist::loggable_quoted;
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

TEST_CASE("loggable keeps well-formed UTF-8 as Postfix logs it, and nothing that forges or hides") {
    CHECK(loggable("j\xc3\xbcrgen@contoso.com") == "j\xc3\xbcrgen@contoso.com");         // U+00FC
    CHECK(loggable("\xe5\xb1\xb1\xe7\x94\xb0@contoso.com") == "\xe5\xb1\xb1\xe7\x94\xb0@contoso.com");  // CJK
    CHECK(loggable("\xf0\x9f\x93\xa7") == "\xf0\x9f\x93\xa7");                             // U+1F4E7
    // As printable(): control characters and DEL.
    CHECK(loggable("a\r\nfake: line") == "a??fake: line");
    CHECK(loggable(std::string("\x00\x1b[31m\x7f", 7)) == "??[31m?");
    // Not well-formed: each byte a '?'.
    CHECK(loggable("\xff\xfe") == "??");
    CHECK(loggable("\xc0\xaf") == "??");              // overlong '/'
    CHECK(loggable("\xe0\x80\xaf") == "???");        // overlong, three bytes
    CHECK(loggable("\xed\xa0\x80") == "???");        // a surrogate
    CHECK(loggable("\xf4\x90\x80\x80") == "????");  // beyond U+10FFFF
    CHECK(loggable("ab\xc3") == "ab?");              // cut short at the end
    CHECK(loggable("\xc3(") == "?(");                // cut short by ASCII
    // Well-formed but hiding: one '?' a character.
    CHECK(loggable("\xc2\x85") == "?");                             // NEL, a C1 control
    CHECK(loggable("a\xe2\x80\xae" "b") == "a?b");                     // RIGHT-TO-LEFT OVERRIDE
    CHECK(loggable("a\xe2\x81\xa6" "b") == "a?b");                     // LEFT-TO-RIGHT ISOLATE
    CHECK(loggable("a\xe2\x80\xa8" "b\xe2\x80\xa9") == "a?b?");        // line, paragraph separators
    // Invisible: a name with one must not show as the name without it.
    CHECK(loggable("zw\xe2\x80\x8b" "ann") == "zw?ann");     // ZERO WIDTH SPACE
    CHECK(loggable("\xef\xbb\xbf" "ann") == "?ann");         // BYTE ORDER MARK
    CHECK(loggable("a\xe2\x80\x8e" "b") == "a?b");           // LEFT-TO-RIGHT MARK
    CHECK(loggable("a\xd8\x9c" "b") == "a?b");                // ARABIC LETTER MARK
    CHECK(loggable("a\xc2\xad" "b") == "a?b");                // SOFT HYPHEN
    CHECK(loggable("a\xe2\x81\xa0" "b") == "a?b");           // WORD JOINER
    CHECK(loggable("a\xef\xb8\x8f" "b") == "a?b");           // VARIATION SELECTOR-16
    CHECK(loggable("a\xef\xbf\xb9" "b") == "a?b");           // INTERLINEAR ANNOTATION ANCHOR
    CHECK(loggable("a\xf3\xa0\x81\x81" "b") == "a?b");       // TAG LATIN CAPITAL LETTER A
    CHECK(loggable("a\xef\xb7\x90" "b") == "a?b");           // U+FDD0, a noncharacter
    CHECK(loggable("a\xf4\x8f\xbf\xbf" "b") == "a?b");       // U+10FFFF, a noncharacter
    CHECK(loggable("caf\xc3\xa9 \xe4\xb8\xad") == "caf\xc3\xa9 \xe4\xb8\xad");  // visible ones stay
}

TEST_CASE("loggable cuts at the bound without splitting a character") {
    CHECK(loggable("abcd\xc3\xbc", 5) == "abcd...");
    CHECK(loggable("abc\xc3\xbc", 5) == "abc\xc3\xbc");
    CHECK(loggable("abcdef", 3) == "abc...");
    CHECK(loggable("abc", 0) == "...");
    CHECK(loggable(std::string(kMaxLoggedFieldBytes + 1, 'x')) == std::string(kMaxLoggedFieldBytes, 'x') + "...");
    CHECK(loggable("abc", 3) == "abc");  // exactly at the bound: nothing cut
    CHECK(loggable("ab\x01", 2) == "ab...");
    CHECK(loggable("ab\x01", 3) == "ab?");
}

TEST_CASE("loggable: runs of ASCII between other characters keep their order and bytes") {
    CHECK(loggable("a\x01" "b\xc3\xbc" "c\x7f" "d\xff" "e") == "a?b\xc3\xbc" "c?d?e");
    CHECK(loggable("\x01\x02") == "??");
    CHECK(loggable("") == "");
    CHECK(loggable(" ~") == " ~");  // the ends of printable ASCII
}

TEST_CASE("a field between angle brackets cannot be ended early, one between quotes neither") {
    // A quoted local part may hold "x>, action=rewrite, new=<...>": copied as it is, the line's
    // first action= would be the sender's.
    const std::string forged = "\"x>, action=rewrite, new=<evil@o365.contoso.com> x\"@contoso.com";
    CHECK(loggable_bracketed(forged) == "\"x?, action=rewrite, new=?evil@o365.contoso.com? x\"@contoso.com");
    CHECK(loggable_bracketed("ann@contoso.com") == "ann@contoso.com");
    CHECK(loggable_bracketed("a\nb<c") == "a?b?c");  // loggable()'s rules still hold
    CHECK(loggable_quoted("alias of \"x\\\" y\"@b") == "alias of \\\"x\\\\\\\" y\\\"@b");
    CHECK(loggable_quoted("unknown user") == "unknown user");
    CHECK(loggable_quoted("a\rb") == "a?b");
    // The bound applies before escaping: at most twice max_bytes, plus the "..." mark.
    CHECK(loggable_quoted(std::string(10, '"'), 4) == "\\\"\\\"\\\"\\\"...");
}
