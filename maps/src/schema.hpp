// The layout of the map inside LMDB (design section 3): database names, meta keys and the
// small encodings shared by the reader and the writer.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "coexist/map_reader.hpp"
#include "lmdb.hpp"

namespace coexist::schema {

// A decimal counter kept in `meta` (audit sequence, per-domain user counts); 0 when it is not
// all digits. Counters are written by coexist-map only, so a bad one means a damaged map, and
// 0 is the answer that makes a reject domain tempfail rather than refuse.
inline std::uint64_t parse_counter(std::string_view s) {
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return 0;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return v;
}

inline constexpr const char* kUsers = "users";      // primary address -> encode(UserRecord)
inline constexpr const char* kAliases = "aliases";  // alias address -> encode_alias(primary)
inline constexpr const char* kMeta = "meta";        // "schema_version" -> decimal
inline constexpr const char* kAudit = "audit";      // address \0 be64(seq) -> encode(AuditEntry)

// Opens the map's meta database in `txn` (creating it when `create`). Throws MapUnavailable when
// it is missing: the file is an LMDB environment no coexist-map init made (a data.mdb deleted,
// for which LMDB made a new one for a writer, or replaced), said so rather than as
// "meta: MDB_NOTFOUND"; MdbError for any other LMDB failure.
inline MDB_dbi open_meta(Transaction& txn, const std::string& path, bool create) {
    try {
        return txn.open_db(kMeta, create);
    } catch (const MdbError& e) {
        if (e.code() != MDB_NOTFOUND) throw;
        throw MapUnavailable(path + " holds no coexist map (its data.mdb is new or was replaced): "
                                    "coexist-map init starts an empty one, coexist-map restore loads a dump");
    }
}

inline constexpr std::string_view kSchemaVersionKey = "schema_version";
inline constexpr std::string_view kAuditSequenceKey = "audit_sequence";
// 2: keys are canonical addresses (design 13.2, canonical_address.hpp). 1 (0.1.0): keys were
// lowercased in ASCII only, quoted local parts kept their quotes; readers still read it (most
// keys are the same), and the first writer re-keys it to 2 (map_store.cpp, upgrade_keys()).
inline constexpr std::string_view kSchemaVersion = "2";
inline constexpr std::string_view kSchemaVersionAsciiKeys = "1";
inline bool readable_schema(std::string_view v) { return v == kSchemaVersion || v == kSchemaVersionAsciiKeys; }

// Users per managed domain, kept by the writer in the same transaction as the users, so a
// reader can tell "unknown user" from "this map has nobody of that domain" (design 13.6) with
// one get. "domain_counts" = "1" says the counts are there; maps written before them lack it
// until the next write of any coexist-map command, which counts the users once.
inline constexpr std::string_view kDomainCountsKey = "domain_counts";
inline constexpr std::string_view kDomainUsersPrefix = "domain_users:";  // + domain -> decimal

inline std::string domain_users_key(std::string_view domain) {
    return std::string(kDomainUsersPrefix).append(domain);
}
inline std::string_view domain_of_key(std::string_view user_key) {
    const auto at = user_key.rfind('@');
    return at == std::string_view::npos ? std::string_view() : user_key.substr(at + 1);
}

// The directory's sync state (design 9, 13.5), written by `coexist-map sync` in the transaction
// of the changes it covers: when the map last equalled the directory (unix time, decimal), from
// which URI, and the RFC 4533 cookie of the last change applied by `sync --follow`.
// Their names are public (map_reader.hpp, namespace coexist::meta): coexist-map's directory
// code writes them through MapTxn::put_meta.

inline constexpr std::uint8_t kAliasVersion = 1;

inline std::string encode_alias(std::string_view primary) {
    std::string out;
    out.push_back(static_cast<char>(kAliasVersion));
    out.append(primary);
    return out;
}

inline std::optional<std::string_view> decode_alias(std::string_view bytes) {
    if (bytes.size() < 2 || static_cast<std::uint8_t>(bytes[0]) != kAliasVersion) return std::nullopt;
    return bytes.substr(1);
}

}  // namespace coexist::schema
