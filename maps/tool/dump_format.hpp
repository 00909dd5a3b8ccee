// The `coexist-map dump` format (design 13.6), shared by dump.cpp and restore.cpp: JSON Lines,
// UTF-8, one object a line.
//
//   {"coexist_dump":1,"schema":2,"version":"0.1.0","created":"2026-11-29T17:00:00Z","host":"relay1",
//    "users":2,"aliases":1,"audit":5,"meta":3}
//   {"meta":"directory_uri","value":"ldap://ldap.contoso.com"}
//   {"user":"ann@contoso.com","state":"migrated","target":"","batch":"wave1","changed":1764403200,
//    "owner":"admin","override":null,"dn":"","entryUUID":""}
//   {"alias":"anna@contoso.com","primary":"ann@contoso.com"}
//   {"audit":"ann@contoso.com","sequence":1,"time":1764403200,"by":"root","command":"set",
//    "old":"","new":"migrated","batch":"wave1"}
//
// The header comes first and counts the lines of each kind that follow, so a truncated dump is
// refused rather than restored in part. Then meta, users, aliases (each after its user) and the
// audit trail. Times are unix seconds, UTC. A text that is not valid UTF-8 (a file name in an
// audit entry's command, say) is written as {"base64":"..."} instead of a string, so every byte
// comes back. coexist-map(8) documents the fields.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace coexist::tool::dump_format {

// Bumped when a line changes meaning; restore refuses a version it does not know.
inline constexpr int kFormatVersion = 1;
// A dump's lines are short (an address, a DN, an audit entry); a longer one is not ours.
inline constexpr std::size_t kMaxLineBytes = 1 << 20;

using Json = nlohmann::ordered_json;

// `bytes` as a JSON string when it is valid UTF-8 (RFC 3629), else {"base64": ...}.
Json text(std::string_view bytes);
// The bytes of a value written by text(); nullopt when it is neither form.
std::optional<std::string> bytes_of(const Json& value);

bool valid_utf8(std::string_view s);

}  // namespace coexist::tool::dump_format
