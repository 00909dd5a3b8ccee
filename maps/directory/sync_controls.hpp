// The LDAP Content Synchronization controls and messages (RFC 4533), encoded and decoded with
// OpenLDAP's lber: Debian's libldap ships no ldap_sync.h, so coexist carries its own. A wire
// format in a file of its own, with a fuzz target (tests/fuzz/fuzz_sync_controls.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coexist::directory {

inline constexpr const char* kSyncRequestOid = "1.3.6.1.4.1.4203.1.9.1.1";  // RFC 4533 2.2
inline constexpr const char* kSyncStateOid = "1.3.6.1.4.1.4203.1.9.1.2";    // RFC 4533 2.3
inline constexpr const char* kSyncDoneOid = "1.3.6.1.4.1.4203.1.9.1.3";     // RFC 4533 2.4
inline constexpr const char* kSyncInfoOid = "1.3.6.1.4.1.4203.1.9.1.4";     // RFC 4533 2.5

// Longest cookie and most UUIDs in one syncIdSet we accept: a server sending more is broken or
// hostile, and the message is refused (decode returns nullopt) rather than allocated.
inline constexpr std::size_t kMaxCookieBytes = 64 * 1024;
inline constexpr std::size_t kMaxSyncIdSetUuids = 1'000'000;

enum class SyncMode { refresh_only = 1, refresh_and_persist = 3 };

// The BER value of the Sync Request Control (RFC 4533 2.2):
//   SEQUENCE { mode ENUMERATED, cookie syncCookie OPTIONAL, reloadHint BOOLEAN DEFAULT FALSE }
// reloadHint is omitted when false (DER default). Never fails.
std::string encode_sync_request(SyncMode mode, const std::optional<std::string>& cookie, bool reload_hint);

enum class SyncStateKind { present = 0, add = 1, modify = 2, remove = 3 };

// Sync State Control value (RFC 4533 2.3), attached to each SearchResultEntry/Reference:
//   SEQUENCE { state ENUMERATED, entryUUID OCTET STRING (SIZE(16)), cookie OPTIONAL }
struct SyncState {
    SyncStateKind state = SyncStateKind::add;
    std::string entry_uuid;               // exactly 16 raw bytes
    std::optional<std::string> cookie;
};
// nullopt for anything that is not exactly such a value (unknown state, UUID not 16 bytes,
// trailing bytes, cookie over kMaxCookieBytes).
std::optional<SyncState> decode_sync_state(std::string_view ber);

// Sync Done Control value (RFC 4533 2.4), on the SearchResultDone of a refreshOnly search:
//   SEQUENCE { cookie OPTIONAL, refreshDeletes BOOLEAN DEFAULT FALSE }
struct SyncDone {
    std::optional<std::string> cookie;
    bool refresh_deletes = false;
};
std::optional<SyncDone> decode_sync_done(std::string_view ber);

// Sync Info Message (RFC 4533 2.5), the value of an IntermediateResponse with kSyncInfoOid:
//   CHOICE { newcookie [0] syncCookie,
//            refreshDelete  [1] SEQUENCE { cookie OPTIONAL, refreshDone BOOLEAN DEFAULT TRUE },
//            refreshPresent [2] SEQUENCE { cookie OPTIONAL, refreshDone BOOLEAN DEFAULT TRUE },
//            syncIdSet      [3] SEQUENCE { cookie OPTIONAL, refreshDeletes BOOLEAN DEFAULT FALSE,
//                                          syncUUIDs SET OF OCTET STRING (SIZE(16)) } }
struct SyncInfo {
    enum class Kind { new_cookie, refresh_delete, refresh_present, sync_id_set };
    Kind kind = Kind::new_cookie;
    std::optional<std::string> cookie;
    bool refresh_done = true;        // refresh_delete / refresh_present
    bool refresh_deletes = false;    // sync_id_set: true = the UUIDs were deleted, false = present
    std::vector<std::string> uuids;  // sync_id_set: 16 raw bytes each
};
std::optional<SyncInfo> decode_sync_info(std::string_view ber);

// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (lowercase hex) for 16 raw bytes; hex of whatever
// was given otherwise. For logs and the entry index.
std::string format_uuid(std::string_view raw);

}  // namespace coexist::directory
