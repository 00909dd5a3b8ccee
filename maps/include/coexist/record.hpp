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
    // A scheduled change (`set --at`, `batch set --at`, design 10): the state the user takes at
    // `pending_at` (unix time, seconds, UTC). route() acts on it from that second on, on every
    // relay at once; the next write of any coexist-map command stores it for good (apply_due()).
    std::optional<State> pending_state;
    std::int64_t pending_at = 0;

    // The state as stored now: the admin's override, else the record's own state. This is what
    // get/list/export show beside the pending change.
    State effective_state() const { return override_state.value_or(state); }
    // The state route() acts on at `now` (unix time, seconds): a pending change that is due
    // wins over everything else.
    State state_at(std::int64_t now) const {
        return pending_state && now >= pending_at ? *pending_state : effective_state();
    }
    bool pending_due(std::int64_t now) const { return pending_state && now >= pending_at; }

    // Makes a due pending change the stored state: on an admin-owned record it becomes the state;
    // on a directory-owned one it becomes an override (design 13.1), dropped when it equals the
    // directory's view. False (record unchanged) when nothing was due.
    bool apply_due(std::int64_t now);

    bool operator==(const UserRecord&) const = default;
};

// Encoding v1: byte 0x01, then state (1 byte), changed (8 bytes big-endian), then target and
// batch each as a 2-byte big-endian length followed by the bytes.
// Encoding v2 (directory-owned records): byte 0x02, state, changed, a flags byte (bit 0: owned
// by the directory, bit 1: an override follows), the override state when flagged, then target,
// batch, dn and entry_uuid as length-prefixed fields. An admin-owned record is still written as v1, so maps
// without a directory stay readable by the previous release. decode() reads every version.
// Encoding v3 (records with a scheduled change): v2's layout, with flags bit 2 saying that the
// pending state (1 byte) and its time (8 bytes big-endian) follow the override. Only records with
// a pending change are written as v3, so a map without schedules stays readable by 0.2.
inline constexpr std::uint8_t kRecordVersion = 1;
inline constexpr std::uint8_t kRecordVersionOwned = 2;
inline constexpr std::uint8_t kRecordVersionScheduled = 3;
std::string encode(const UserRecord& r);
// nullopt when the bytes are not a record this build understands (unknown version, truncated,
// bad state): the caller treats that as a temporary failure, never as "unknown user".
std::optional<UserRecord> decode_user(std::string_view bytes);

}  // namespace coexist
