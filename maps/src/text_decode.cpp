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

}  // namespace

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

std::variant<DecodedText, DecodeError> decode_text(std::string_view bytes) {
    TextDecoder decoder;
    std::string out;
    if (auto e = decoder.feed(bytes, true, out)) return std::move(*e);
    return DecodedText{std::move(out), decoder.encoding()};
}

std::optional<DecodeError> TextDecoder::feed(std::string_view bytes, bool last, std::string& out) {
    if (error_) return error_;
    std::string joined;  // a held-back character and the new bytes after it
    std::string_view data = bytes;
    if (!held_.empty()) {
        joined = std::move(held_);
        joined.append(bytes);
        data = joined;
        held_.clear();
    }
    if (form_ == Form::unknown) {
        // The longest mark is 4 bytes: wait for them unless the file is shorter.
        if (data.size() < kBomUtf32le.size() && !last) {
            held_ = std::string(data);
            return std::nullopt;
        }
        // UTF-32's marks begin with UTF-16LE's: test them first.
        if (starts_with(data, kBomUtf32le) || starts_with(data, kBomUtf32be)) {
            error_ = DecodeError{0, 0, "UTF-32 (found its byte order mark): save the file as \"CSV UTF-8\" or "
                                       "\"Unicode Text\""};
            return error_;
        }
        std::size_t bom = 0;
        if (starts_with(data, kBomUtf8)) {
            form_ = Form::utf8, encoding_ = "UTF-8 with BOM", bom = kBomUtf8.size();
        } else if (starts_with(data, kBomUtf16le)) {
            form_ = Form::utf16le, encoding_ = "UTF-16LE with BOM", bom = kBomUtf16le.size();
        } else if (starts_with(data, kBomUtf16be)) {
            form_ = Form::utf16be, encoding_ = "UTF-16BE with BOM", bom = kBomUtf16be.size();
        } else {
            // No mark: UTF-8 (plain ASCII is UTF-8). UTF-16 without a mark shows as NUL bytes,
            // which are refused with a hint.
            form_ = Form::utf8, encoding_ = "UTF-8";
        }
        data.remove_prefix(bom);
        offset_ += bom;
    }
    error_ = decode(data, last, out);
    return error_;
}

std::optional<DecodeError> TextDecoder::decode(std::string_view data, bool last, std::string& out) {
    const std::size_t base = offset_;  // file offset of data[0]
    std::size_t i = 0;
    if (form_ == Form::utf8) {
        while (i < data.size()) {
            const char c = data[i];
            if (static_cast<unsigned char>(c) < 0x80) {
                if (c == '\n') ++line_;
                if (c == '\0')
                    return DecodeError{line_, base + i, fmt::format("NUL character (read as {}; a file with NUL bytes "
                                                                    "is usually UTF-16 without a byte order mark)",
                                                                    encoding_)};
                ++i;
                continue;
            }
            if (!last && data.size() - i < 4) break;  // perhaps cut by the end of the piece
            const std::size_t n = utf8_sequence_length(data, i);
            if (n == 0)
                return DecodeError{line_, base + i,
                                   fmt::format("invalid UTF-8 (byte 0x{:02X}; read as {}: save the file as "
                                               "\"CSV UTF-8\" or \"Unicode Text\")",
                                               static_cast<unsigned char>(c), encoding_)};
            i += n;
        }
        out.append(data.substr(0, i));
    } else {
        const bool little_endian = form_ == Form::utf16le;
        const auto unit_at = [&](std::size_t k) -> std::uint32_t {
            const auto lo = static_cast<unsigned char>(data[k + (little_endian ? 0 : 1)]);
            const auto hi = static_cast<unsigned char>(data[k + (little_endian ? 1 : 0)]);
            return static_cast<std::uint32_t>(hi << 8 | lo);
        };
        for (; i + 1 < data.size(); i += 2) {
            std::uint32_t cp = unit_at(i);
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                return DecodeError{line_, base + i, fmt::format("unpaired UTF-16 surrogate (read as {})", encoding_)};
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (i + 3 >= data.size() && !last) break;  // its pair is in the next piece
                const std::uint32_t low = i + 3 < data.size() ? unit_at(i + 2) : 0;
                if (low < 0xDC00 || low > 0xDFFF)
                    return DecodeError{line_, base + i,
                                       fmt::format("unpaired UTF-16 surrogate (read as {})", encoding_)};
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                i += 2;
            }
            if (cp == 0) return DecodeError{line_, base + i, fmt::format("NUL character (read as {})", encoding_)};
            if (cp == '\n') ++line_;
            append_utf8(out, cp);
        }
        if (i != data.size() && last)
            return DecodeError{line_, base + i, fmt::format("odd number of bytes: the file ends inside a character "
                                                            "(read as {})", encoding_)};
    }
    held_ = std::string(data.substr(i));
    offset_ = base + i;
    return std::nullopt;
}

}  // namespace coexist
