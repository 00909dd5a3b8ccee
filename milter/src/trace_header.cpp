#include "trace_header.hpp"

#include "coexist/address.hpp"

namespace coexist::milter {

bool is_trace_header(std::string_view name) {
    return name.size() == kTraceHeaderName.size() &&
           lowercase_ascii(name) == lowercase_ascii(kTraceHeaderName);
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
