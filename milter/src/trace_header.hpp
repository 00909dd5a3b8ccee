// The loop guard: one X-Coexist-Trace: header per pass through a coexist relay (design 4).
#pragma once

#include <cstddef>
#include <ctime>
#include <string>
#include <string_view>

namespace coexist::milter {

inline constexpr std::string_view kTraceHeaderName = "X-Coexist-Trace";

// Header names compare case-insensitively (RFC 5322).
bool is_trace_header(std::string_view name) noexcept;

// The queue id as it may stand in a header: Postfix's are letters and digits (short or long
// form, postconf(5) enable_long_queue_ids), but {i} is whatever the MTA sent. Any other byte
// (a CR LF that would start a header of its own) becomes '?', and the id ends after
// kMaxHeaderQueueIdBytes bytes.
inline constexpr std::size_t kMaxHeaderQueueIdBytes = 64;
std::string header_safe_queue_id(std::string_view queue_id);
// True when header_safe_queue_id() would keep `queue_id` as it is (no allocation).
bool is_header_safe_queue_id(std::string_view queue_id) noexcept;

// "HOST; id=QUEUEID; Sun, 22 Nov 2026 22:41:08 +0000": who routed it, which message, when.
// The queue id passes through header_safe_queue_id(); the host is this machine's name.
std::string trace_header_value(std::string_view host, std::string_view queue_id, std::time_t when);

}  // namespace coexist::milter
