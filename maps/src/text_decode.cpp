#include "coexist/text_decode.hpp"

#include <fmt/format.h>

#include <cstdint>

namespace coexist {

namespace {

constexpr std::string_view kBomUtf8 = "\xEF\xBB\xBF";
constexpr std::string_view kBomUtf16le = "\xFF\xFE";
constexpr std::string_view kBomUtf16be = "\xFE\xFF";
constexpr std::string_view kBomUtf32le = std::string_view("\xFF\xFE\x00\x00", 4);
constexpr std::string_view kBomUtf32be = std::string_view("\x00\x00\xFE\xFF", 4);

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

// Length of the well-formed UTF-8 sequence at s[i] (Unicode 15, table 3-7), 0 if ill-formed.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const std::size_t left = s.size() - i;
    const unsigned char c = b(0);
    if (c < 0x80) return 1;
    auto cont = [&](std::size_t k, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
        return k < left && b(k) >= lo && b(k) <= hi;
    };
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
    if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;  // no UTF-16 surrogates
    if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
    if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
    if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;  // <= U+10FFFF
    return 0;
}

std::variant<DecodedText, DecodeError> check_utf8(std::string_view bytes, std::size_t bom, std::string_view encoding) {
    std::size_t line = 1;
    for (std::size_t i = bom; i < bytes.size();) {
        const char c = bytes[i];
        if (c == '\n') ++line;
        if (c == '\0')
            return DecodeError{line, i, fmt::format("NUL character (read as {}; a file with NUL bytes is "
                                                    "usually UTF-16 without a byte order mark)", encoding)};
        const std::size_t n = utf8_sequence_length(bytes, i);
        if (n == 0)
            return DecodeError{line, i, fmt::format("invalid UTF-8 (byte 0x{:02X}; read as {}: save the file as "
                                                    "\"CSV UTF-8\" or \"Unicode Text\")",
                                                    static_cast<unsigned char>(c), encoding)};
        i += n;
    }
    return DecodedText{std::string(bytes.substr(bom)), encoding};
}

std::variant<DecodedText, DecodeError> decode_utf16(std::string_view bytes, bool little_endian,
                                                    std::string_view encoding) {
    std::string out;
    out.reserve(bytes.size() / 2 + bytes.size() / 8);
    std::size_t line = 1;
    const auto unit_at = [&](std::size_t i) -> std::uint32_t {
        const auto lo = static_cast<unsigned char>(bytes[i + (little_endian ? 0 : 1)]);
        const auto hi = static_cast<unsigned char>(bytes[i + (little_endian ? 1 : 0)]);
        return static_cast<std::uint32_t>(hi << 8 | lo);
    };
    std::size_t i = 2;  // after the byte order mark
    for (; i + 1 < bytes.size(); i += 2) {
        std::uint32_t cp = unit_at(i);
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return DecodeError{line, i, fmt::format("unpaired UTF-16 surrogate (read as {})", encoding)};
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            const std::uint32_t low = i + 3 < bytes.size() ? unit_at(i + 2) : 0;
            if (low < 0xDC00 || low > 0xDFFF)
                return DecodeError{line, i, fmt::format("unpaired UTF-16 surrogate (read as {})", encoding)};
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            i += 2;
        }
        if (cp == 0) return DecodeError{line, i, fmt::format("NUL character (read as {})", encoding)};
        if (cp == '\n') ++line;
        append_utf8(out, cp);
    }
    if (i != bytes.size())
        return DecodeError{line, i, fmt::format("odd number of bytes: the file ends inside a character (read as {})",
                                                encoding)};
    return DecodedText{std::move(out), encoding};
}

}  // namespace

std::variant<DecodedText, DecodeError> decode_text(std::string_view bytes) {
    // UTF-32's marks begin with UTF-16LE's: test them first.
    if (starts_with(bytes, kBomUtf32le) || starts_with(bytes, kBomUtf32be))
        return DecodeError{0, 0, "UTF-32 (found its byte order mark): save the file as \"CSV UTF-8\" or "
                                 "\"Unicode Text\""};
    if (starts_with(bytes, kBomUtf8)) return check_utf8(bytes, kBomUtf8.size(), "UTF-8 with BOM");
    if (starts_with(bytes, kBomUtf16le)) return decode_utf16(bytes, true, "UTF-16LE with BOM");
    if (starts_with(bytes, kBomUtf16be)) return decode_utf16(bytes, false, "UTF-16BE with BOM");
    // No mark: UTF-8 (plain ASCII is UTF-8). UTF-16 without a mark shows as NUL bytes, which
    // check_utf8 refuses with a hint.
    return check_utf8(bytes, 0, "UTF-8");
}

}  // namespace coexist
