// The first stage of `coexist-map import` (design §13.4): the bytes of the file an admin saved
// become UTF-8 text, or a refusal that says which encoding was found and where it went wrong.
// Spreadsheets save "CSV UTF-8" with a byte order mark, and Excel's "Unicode Text" as UTF-16LE
// with one; a file is never stored as the bytes came.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace coexist {

// The UTF-8 of the Unicode scalar value `cp` (at most U+10FFFF, no surrogate), appended to `out`.
void append_utf8(std::string& out, std::uint32_t cp);

// The length in bytes of the well-formed UTF-8 sequence at s[i] (Unicode 15, table 3-7): 1 for
// ASCII, 0 when ill-formed (overlong, a surrogate, beyond U+10FFFF, truncated). i < s.size().
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);

struct DecodedText {
    std::string utf8;          // the text, without its byte order mark
    std::string_view encoding;  // "UTF-8", "UTF-8 with BOM", "UTF-16LE with BOM", "UTF-16BE with BOM"
};

struct DecodeError {
    std::size_t line = 0;    // 1-based line of the offending character (0: the file as a whole)
    std::size_t offset = 0;  // 0-based byte offset in the file
    std::string reason;      // names the encoding the file was read as
};

// Detects the encoding from the byte order mark (UTF-8, UTF-16LE, UTF-16BE; without one, UTF-8)
// and returns the text as UTF-8. Refuses: invalid UTF-8 (overlong forms, surrogates, beyond
// U+10FFFF, truncated sequences), unpaired UTF-16 surrogates or an odd byte count, UTF-32, UTF-16
// without a byte order mark (recognised by its NUL bytes), and NUL characters in any encoding.
std::variant<DecodedText, DecodeError> decode_text(std::string_view bytes);

// The same decoding a piece at a time, so that `coexist-map import` holds a chunk of the file,
// not the file: feed() takes the file's next bytes in order and appends their UTF-8 to `out`.
// A character split between two pieces is held back (at most 3 bytes) until the next one.
// Errors and offsets are decode_text's, counted from the start of the file.
class TextDecoder {
public:
    // `last`: these bytes end the file (a sequence still open there is an error). After an
    // error, returns it again and appends nothing.
    std::optional<DecodeError> feed(std::string_view bytes, bool last, std::string& out);
    // "UTF-8", "UTF-8 with BOM", ...; "" until the first bytes have been seen.
    std::string_view encoding() const { return encoding_; }

private:
    enum class Form { unknown, utf8, utf16le, utf16be };
    std::optional<DecodeError> decode(std::string_view bytes, bool last, std::string& out);

    Form form_ = Form::unknown;
    std::string_view encoding_;
    std::string held_;         // the bytes of a character split by the end of the last piece
    std::size_t offset_ = 0;   // file offset of held_[0] (of the next byte, when held_ is empty)
    std::size_t line_ = 1;
    std::optional<DecodeError> error_;
};

}  // namespace coexist
