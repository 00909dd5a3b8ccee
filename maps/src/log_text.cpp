#include "coexist/log_text.hpp"

#include <algorithm>

namespace coexist {

std::string printable(std::string_view untrusted, std::size_t max_bytes) {
    const bool cut = untrusted.size() > max_bytes;
    if (cut) untrusted = untrusted.substr(0, max_bytes);
    std::string out;
    out.reserve(untrusted.size() + 3);
    out.append(untrusted);
    for (char& c : out)
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
    if (cut) out += "...";
    return out;
}

namespace {

// The length of the well-formed UTF-8 sequence that starts text[i] (a byte >= 0x80), and its
// code point; 0 when it is not one. The ranges of each lead byte's second byte are RFC 3629's
// table (section 4), which leaves out overlong forms, surrogates and what lies beyond U+10FFFF.
std::size_t utf8_sequence(std::string_view text, std::size_t i, char32_t& code_point) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
    const unsigned char lead = byte(i);
    std::size_t length = 0;
    unsigned char low = 0x80, high = 0xbf;  // the second byte's range
    if (lead >= 0xc2 && lead <= 0xdf) length = 2;
    else if (lead >= 0xe0 && lead <= 0xef) length = 3;
    else if (lead >= 0xf0 && lead <= 0xf4) length = 4;
    else return 0;
    if (lead == 0xe0) low = 0xa0;
    if (lead == 0xed) high = 0x9f;
    if (lead == 0xf0) low = 0x90;
    if (lead == 0xf4) high = 0x8f;
    if (i + length > text.size()) return 0;
    if (byte(i + 1) < low || byte(i + 1) > high) return 0;
    code_point = lead & (0x7f >> length);
    for (std::size_t k = 1; k < length; ++k) {
        if ((byte(i + k) & 0xc0) != 0x80) return 0;
        code_point = (code_point << 6) | (byte(i + k) & 0x3f);
    }
    return length;
}

// False for what a terminal would not show as itself: control characters, the separators and
// bidirectional controls, the default-ignorable code points (Unicode's
// DerivedCoreProperties.txt: zero-width spaces and joiners, direction marks, soft hyphen,
// variation selectors, fillers, tags) and the noncharacters.
bool shown_as_is(char32_t c) {
    if (c <= 0x9f) return false;  // C1 control characters
    if (c == 0x00ad || c == 0x034f || c == 0x061c || c == 0x3164 || c == 0xfeff || c == 0xffa0) return false;
    if ((c >= 0x115f && c <= 0x1160) || (c >= 0x17b4 && c <= 0x17b5) || (c >= 0x180b && c <= 0x180f)) return false;
    if (c >= 0x200b && c <= 0x200f) return false;  // zero-width space, joiners, direction marks
    if (c >= 0x2028 && c <= 0x202e) return false;  // line and paragraph separators, embeddings, overrides
    if (c >= 0x2060 && c <= 0x206f) return false;  // word joiner, invisible operators, isolates
    if (c >= 0xfe00 && c <= 0xfe0f) return false;  // variation selectors
    if (c >= 0xfdd0 && c <= 0xfdef) return false;  // noncharacters
    if (c >= 0xfff0 && c <= 0xfffb) return false;  // unassigned ignorables, interlinear annotation
    if ((c & 0xfffe) == 0xfffe) return false;      // U+xFFFE and U+xFFFF of every plane
    if ((c >= 0x1bca0 && c <= 0x1bca3) || (c >= 0x1d173 && c <= 0x1d17a)) return false;
    if (c >= 0xe0000 && c <= 0xe0fff) return false;  // tags, variation selectors supplement
    return true;
}

}  // namespace

std::string loggable(std::string_view untrusted, std::size_t max_bytes) {
    std::string out;
    out.reserve(std::min(untrusted.size(), max_bytes) + 3);
    std::size_t i = 0;
    while (i < untrusted.size()) {
        // A run of printable ASCII, nearly every byte of a log line, goes in one append: a
        // character at a time, the rewrite lines cost several times the lookup they report.
        std::size_t ascii = i;
        const std::size_t ascii_end = std::min(untrusted.size(), max_bytes);
        while (ascii < ascii_end && static_cast<unsigned char>(untrusted[ascii]) - 0x20u < 0x5fu) ++ascii;
        out.append(untrusted.substr(i, ascii - i));
        i = ascii;
        if (i == untrusted.size()) break;
        const auto c = static_cast<unsigned char>(untrusted[i]);
        std::size_t length = 1;
        bool keep = c >= 0x20 && c < 0x7f;
        if (c >= 0x80) {
            char32_t code_point = 0;
            if (const std::size_t n = utf8_sequence(untrusted, i, code_point)) {
                length = n;
                keep = shown_as_is(code_point);
            }
        }
        // The bound is on the bytes read, as printable()'s: a '?' for a whole character
        // counts its bytes.
        if (i + length > max_bytes) {
            out += "...";
            return out;
        }
        if (keep) out.append(untrusted.substr(i, length));
        else out.push_back('?');
        i += length;
    }
    return out;
}

std::string loggable_bracketed(std::string_view untrusted, std::size_t max_bytes) {
    std::string out = loggable(untrusted, max_bytes);
    for (char& c : out)
        if (c == '<' || c == '>') c = '?';
    return out;
}

std::string loggable_quoted(std::string_view untrusted, std::size_t max_bytes) {
    const std::string shown = loggable(untrusted, max_bytes);
    std::string out;
    out.reserve(shown.size() + 8);
    for (const char c : shown) {
        if (c == '"' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    return out;
}

}  // namespace coexist
