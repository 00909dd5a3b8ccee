#include "trace_header.hpp"

#include <cstddef>

namespace coexist::milter {

bool is_trace_header(std::string_view name) noexcept {
    // Byte by byte, without a lowercased copy: it runs for every header of every message, in
    // a stage that has no reply to carry a failure (negotiation.hpp).
    if (name.size() != kTraceHeaderName.size()) return false;
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    for (std::size_t i = 0; i < name.size(); ++i)
        if (lower(name[i]) != lower(kTraceHeaderName[i])) return false;
    return true;
}

std::string trace_header_value(std::string_view host, std::string_view queue_id, std::time_t when) {
    std::tm tm{};
    ::gmtime_r(&when, &tm);
    char date[64];
    const std::size_t n = std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    std::string out(host);
    out += "; id=";
    out += queue_id;
    out += "; ";
    out.append(date, n);
    return out;
}

}  // namespace coexist::milter
