// Times as coexist prints and reads them: ISO 8601, printed in UTC to the second
// ("2026-11-29T14:06:02Z").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace coexist {

// `unix_time`: seconds since the epoch. Never throws beyond std::bad_alloc.
std::string utc_timestamp(std::int64_t unix_time);

// Reads an ISO 8601 date and time with an explicit offset (design 13.6: a schedule written
// without one would flip at a different instant on each relay's time zone):
// `YYYY-MM-DDTHH:MM[:SS]` (or a space for the `T`) followed by `Z`, `±HH:MM` or `±HHMM`.
// Returns unix time in seconds, or nullopt for anything else (no offset, a field out of range).
std::optional<std::int64_t> parse_iso8601(std::string_view text);

}  // namespace coexist
