#include "coexist/log_text.hpp"

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

}  // namespace coexist
