// Untrusted text on its way into a log line or a reply: an address, a key or a reason that came
// from the network or from a file may carry control characters (a forged second log line, a
// broken SMTP reply), bytes a terminal interprets, or be very long. Every program passes such
// text through printable() and nothing else, so there is one rule for what reaches a log.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace coexist {

// Longest piece of untrusted text copied into one log field or reply, in bytes.
inline constexpr std::size_t kMaxLoggedFieldBytes = 256;

// `untrusted` with every byte outside printable US-ASCII (0x20..0x7e: control bytes, DEL, and
// 8-bit bytes, which SMTP replies may not carry) replaced by '?'. When it is longer than
// `max_bytes`, the first `max_bytes` are kept and "..." appended, so the result is at most
// max_bytes + 3 bytes. Throws only std::bad_alloc.
std::string printable(std::string_view untrusted, std::size_t max_bytes = kMaxLoggedFieldBytes);

}  // namespace coexist
