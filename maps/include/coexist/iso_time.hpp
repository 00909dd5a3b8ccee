// Times as an admin writes them on the command line (design 13.6: `--at`, `--since`): ISO 8601
// with an explicit UTC offset, so a command typed on a laptop in Paris means the same instant
// on every relay, whatever their TZ.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace coexist {

// What parse_iso8601_time() accepts, for error messages.
inline constexpr std::string_view kIso8601Form = "YYYY-MM-DDTHH:MM[:SS]Z or with an offset, +HH:MM";

// Parses `YYYY-MM-DDTHH:MM[:SS[.fraction]]` followed by `Z` or an offset `+HH:MM`, `-HH:MM`,
// `+HHMM` or `+HH` (ISO 8601 extended format; RFC 3339 also allows a space or lowercase `t`
// between date and time, and lowercase `z`). A fraction of a second is dropped (coexist keeps
// times to the second). Returns unix time in seconds (UTC); nullopt for anything else,
// including a time without an offset (local time would differ between relays), a date alone,
// or an impossible date (2026-02-30). Years 1970-9999.
std::optional<std::int64_t> parse_iso8601_time(std::string_view text);

}  // namespace coexist
