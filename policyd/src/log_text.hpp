// Untrusted bytes on their way into a log line: a key or a recipient may carry control
// characters or be long, and a log line must stay one line a human can grep.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace coexist::policyd {

// Longest piece of client-supplied text copied into one log field.
inline constexpr std::size_t kMaxLoggedFieldBytes = 256;

// Bytes outside printable ASCII become '?'; longer than kMaxLoggedFieldBytes is cut with "...".
std::string printable(std::string_view untrusted);

}  // namespace coexist::policyd
