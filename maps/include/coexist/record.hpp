// What the map stores per user and per alias, and its versioned byte encoding.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace coexist {

enum class State { source, migrated, dual };

std::string_view to_string(State s);
// "source", "migrated" or "dual", in any case; nullopt for anything else.
std::optional<State> parse_state(std::string_view s);

struct UserRecord {
    State state = State::migrated;
    std::string target;      // explicit routing address; empty = local@routing_domain
    std::string batch;       // migration batch name; may be empty
    std::int64_t changed = 0;  // unix time of the last change

    bool operator==(const UserRecord&) const = default;
};

// Encoding v1: byte 0x01, then state (1 byte), changed (8 bytes big-endian), then target and
// batch each as a 2-byte big-endian length followed by the bytes. A later schema adds a new
// version byte; decode() keeps reading every older one.
inline constexpr std::uint8_t kRecordVersion = 1;
std::string encode(const UserRecord& r);
// nullopt when the bytes are not a record this build understands (unknown version, truncated,
// bad state): the caller treats that as a temporary failure, never as "unknown user".
std::optional<UserRecord> decode_user(std::string_view bytes);

}  // namespace coexist
