// coexist-map's standard error as an admin's terminal receives it: whatever a message quotes (a
// value from coexist.ini, a CSV cell, a file name typed on the command line, an argument the
// option parser did not expect) reaches it with its control characters shown as '?', so that
// no escape sequence changes the terminal and no carriage return hides what came before. One
// filter for every message, the option parser's too, instead of a call at each of them; the
// messages that already pass their text through printable() or loggable() are unchanged by it.
#pragma once

#include <ostream>
#include <streambuf>

namespace coexist::tool {

// Writes through to `out`, each C0 control character but newline and tab, DEL, and each C1
// control character (U+0080..U+009F, the two bytes C2 80..C2 9F in UTF-8) as one '?'. Other
// bytes, UTF-8 included, pass unchanged.
class TerminalSafeStreambuf : public std::streambuf {
public:
    explicit TerminalSafeStreambuf(std::streambuf* out) : out_(out) {}
    ~TerminalSafeStreambuf() override;
    TerminalSafeStreambuf(const TerminalSafeStreambuf&) = delete;
    TerminalSafeStreambuf& operator=(const TerminalSafeStreambuf&) = delete;

protected:
    int_type overflow(int_type ch) override;
    std::streamsize xsputn(const char* s, std::streamsize n) override;
    int sync() override;

private:
    bool put(unsigned char c);
    std::streambuf* out_;
    // A C2 byte whose next byte decides whether it starts a C1 control: held back until then
    // (a flush between the two, as std::cerr flushes after every insertion, does not write it).
    bool lead_byte_held_ = false;
};

// For its lifetime, `stream` writes through a TerminalSafeStreambuf; its buffer is given back
// when it ends.
class TerminalSafeStream {
public:
    explicit TerminalSafeStream(std::ostream& stream);
    ~TerminalSafeStream();
    TerminalSafeStream(const TerminalSafeStream&) = delete;
    TerminalSafeStream& operator=(const TerminalSafeStream&) = delete;

private:
    std::ostream& stream_;
    std::streambuf* original_;
    TerminalSafeStreambuf filter_;
};

}  // namespace coexist::tool
