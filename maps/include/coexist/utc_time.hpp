// Times as coexist prints them: ISO 8601 in UTC, to the second ("2026-11-29T14:06:02Z").
#pragma once

#include <cstdint>
#include <string>

namespace coexist {

// `unix_time`: seconds since the epoch. Never throws beyond std::bad_alloc.
std::string utc_timestamp(std::int64_t unix_time);

}  // namespace coexist
