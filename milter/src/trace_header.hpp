// The loop guard: one X-Coexist-Trace: header per pass through a coexist relay (design 4).
#pragma once

#include <ctime>
#include <string>
#include <string_view>

namespace coexist::milter {

inline constexpr std::string_view kTraceHeaderName = "X-Coexist-Trace";

// Header names compare case-insensitively (RFC 5322).
bool is_trace_header(std::string_view name) noexcept;

// "HOST; id=QUEUEID; Sun, 22 Nov 2026 22:41:08 +0000": who routed it, which message, when.
std::string trace_header_value(std::string_view host, std::string_view queue_id, std::time_t when);

}  // namespace coexist::milter
