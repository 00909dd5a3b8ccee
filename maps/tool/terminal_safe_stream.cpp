#include "terminal_safe_stream.hpp"

namespace coexist::tool {

namespace {
constexpr unsigned char kC1Lead = 0xC2;  // UTF-8 lead byte of U+0080..U+00BF
}  // namespace

TerminalSafeStreambuf::~TerminalSafeStreambuf() {
    if (lead_byte_held_) out_->sputc(static_cast<char>(kC1Lead));
    out_->pubsync();
}

bool TerminalSafeStreambuf::put(unsigned char c) {
    if (lead_byte_held_) {
        lead_byte_held_ = false;
        if (c >= 0x80 && c <= 0x9F) return out_->sputc('?') != traits_type::eof();
        if (out_->sputc(static_cast<char>(kC1Lead)) == traits_type::eof()) return false;
    }
    if (c == kC1Lead) {
        lead_byte_held_ = true;
        return true;
    }
    const bool control = (c < 0x20 && c != '\n' && c != '\t') || c == 0x7F;
    return out_->sputc(control ? '?' : static_cast<char>(c)) != traits_type::eof();
}

TerminalSafeStreambuf::int_type TerminalSafeStreambuf::overflow(int_type ch) {
    if (traits_type::eq_int_type(ch, traits_type::eof())) return traits_type::not_eof(ch);
    return put(static_cast<unsigned char>(traits_type::to_char_type(ch))) ? ch : traits_type::eof();
}

std::streamsize TerminalSafeStreambuf::xsputn(const char* s, std::streamsize n) {
    for (std::streamsize i = 0; i < n; ++i)
        if (!put(static_cast<unsigned char>(s[i]))) return i;
    return n;
}

int TerminalSafeStreambuf::sync() { return out_->pubsync(); }

TerminalSafeStream::TerminalSafeStream(std::ostream& stream)
    : stream_(stream), original_(stream.rdbuf()), filter_(original_) {
    stream_.rdbuf(&filter_);
}

TerminalSafeStream::~TerminalSafeStream() {
    stream_.flush();
    stream_.rdbuf(original_);
}

}  // namespace coexist::tool
