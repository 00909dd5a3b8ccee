#include "xtext.hpp"

#include "coexist/text_decode.hpp"

namespace coexist::milter {

namespace {

constexpr char kHex[] = "0123456789ABCDEF";

bool is_upper_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::string xtext_encode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        if (c >= '!' && c <= '~' && c != '+' && c != '=') {
            out.push_back(ch);
        } else {
            out.push_back('+');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0x0f]);
        }
    }
    return out;
}

bool is_xtext(std::string_view text) {
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '+') {
            if (i + 2 >= text.size()) return false;  // needs two more characters
            if (!is_upper_hex(text[i + 1]) || !is_upper_hex(text[i + 2])) return false;
            i += 2;
        } else if (c < '!' || c > '~' || c == '=') {
            return false;
        }
    }
    return true;
}

std::optional<std::string> decode_utf8_addr_text(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c == '\\') {
            // EmbeddedUnicodeChar: "\x{" 1*6HEXDIG "}", no surrogate, at most U+10FFFF.
            if (text.substr(i, 3) != "\\x{") return std::nullopt;
            std::size_t j = i + 3;
            char32_t cp = 0;
            while (j < text.size() && text[j] != '}' && j - (i + 3) < 6) {
                const int v = hex_value(text[j]);
                if (v < 0) return std::nullopt;
                cp = (cp << 4) | static_cast<char32_t>(v);
                ++j;
            }
            if (j == i + 3 || j >= text.size() || text[j] != '}') return std::nullopt;
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp < 0x20 || cp == 0x7F) return std::nullopt;
            append_utf8(out, cp);
            i = j + 1;
        } else if (c >= 0x80) {
            const std::size_t n = utf8_sequence_length(text, i);
            if (n == 0) return std::nullopt;
            out.append(text.substr(i, n));
            i += n;
        } else if (c < '!' || c > '~' || c == '+' || c == '=') {
            return std::nullopt;
        } else {
            out.push_back(static_cast<char>(c));
            ++i;
        }
    }
    if (out.empty()) return std::nullopt;
    return out;
}

std::string utf8_addr_for_cleanup(std::string_view address) {
    std::string out;
    out.reserve(address.size());
    for (const char ch : address) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '+' || c <= ' ' || c == 0x7F) {
            out.push_back('+');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 0x0f]);
        } else {
            out.push_back(ch);
        }
    }
    return out;
}

}  // namespace coexist::milter
