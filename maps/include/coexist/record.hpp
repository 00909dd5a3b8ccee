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

// Who a user record belongs to (design 13.1): a record found in the directory is the
// directory's (`coexist-map sync` sets its address, aliases and state); every other record is
// the admin's (coexist-map set/import/remove).
enum class Owner { admin, directory };

std::string_view to_string(Owner o);

struct UserRecord {
    State state = State::migrated;  // directory-owned: the directory's view of the state
    std::string target;      // explicit routing address; empty = local@routing_domain
    std::string batch;       // migration batch name; may be empty
    std::int64_t changed = 0;  // unix time of the last change
    Owner owner = Owner::admin;
    // Directory-owned only: the state an admin set by hand (`coexist-map set`). It wins over
    // `state` in route() until the admin clears it or the directory catches up with it.
    std::optional<State> override_state;
    std::string dn;          // directory-owned only: the entry's normalized DN
    std::string entry_uuid;  // directory-owned only: the entry's entryUUID (RFC 4530 string form)

    // The state route() acts on.
    State effective_state() const { return override_state.value_or(state); }

    bool operator==(const UserRecord&) const = default;
};

// Encoding v1: byte 0x01, then state (1 byte), changed (8 bytes big-endian), then target and
// batch each as a 2-byte big-endian length followed by the bytes.
// Encoding v2 (directory-owned records): byte 0x02, state, changed, a flags byte (bit 0: owned
// by the directory, bit 1: an override follows), the override state when flagged, then target,
// batch, dn and entry_uuid as length-prefixed fields. An admin-owned record is still written as v1, so maps
// without a directory stay readable by the previous release. decode() reads every version.
inline constexpr std::uint8_t kRecordVersion = 1;
inline constexpr std::uint8_t kRecordVersionOwned = 2;
std::string encode(const UserRecord& r);
// nullopt when the bytes are not a record this build understands (unknown version, truncated,
// bad state): the caller treats that as a temporary failure, never as "unknown user".
std::optional<UserRecord> decode_user(std::string_view bytes);

}  // namespace coexist
