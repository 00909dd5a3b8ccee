#include "log_text.hpp"

namespace coexist::policyd {

std::string printable(std::string_view untrusted) {
    const bool cut = untrusted.size() > kMaxLoggedFieldBytes;
    if (cut) untrusted = untrusted.substr(0, kMaxLoggedFieldBytes);
    std::string out;
    out.reserve(untrusted.size() + 3);
    for (unsigned char c : untrusted) out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
    if (cut) out += "...";
    return out;
}

}  // namespace coexist::policyd
