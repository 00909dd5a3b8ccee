// RFC 4533 control values against BER written out by hand from the ASN.1 of RFC 4533 section 2
// (never produced by our encoder), and the malformed values a decoder must refuse.
#include <catch2/catch.hpp>

#include <initializer_list>
#include <string>

#include "sync_controls.hpp"

using namespace coexist::directory;

namespace {

std::string bytes(std::initializer_list<unsigned char> list) { return std::string(list.begin(), list.end()); }

// 00112233-4455-6677-8899-aabbccddeeff and ffeeddcc-bbaa-9988-7766-554433221100, raw.
const std::string kUuidA = bytes({0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
                                  0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff});
const std::string kUuidB = bytes({0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88,
                                  0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00});

// Tag and length of the UUID OCTET STRING: 04 10.
const std::string kUuidHeader = bytes({0x04, 0x10});

}  // namespace

TEST_CASE("sync request control value: DER as written from the ASN.1") {
    // SEQUENCE { mode refreshOnly }
    CHECK(encode_sync_request(SyncMode::refresh_only, std::nullopt, false) == bytes({0x30, 0x03, 0x0a, 0x01, 0x01}));
    // SEQUENCE { mode refreshAndPersist, cookie "abc" }
    CHECK(encode_sync_request(SyncMode::refresh_and_persist, std::string("abc"), false) ==
          bytes({0x30, 0x08, 0x0a, 0x01, 0x03, 0x04, 0x03, 'a', 'b', 'c'}));
    // SEQUENCE { mode refreshAndPersist, cookie "abc", reloadHint TRUE }
    CHECK(encode_sync_request(SyncMode::refresh_and_persist, std::string("abc"), true) ==
          bytes({0x30, 0x0b, 0x0a, 0x01, 0x03, 0x04, 0x03, 'a', 'b', 'c', 0x01, 0x01, 0xff}));
    // SEQUENCE { mode refreshOnly, reloadHint TRUE }: no cookie, the boolean still follows
    CHECK(encode_sync_request(SyncMode::refresh_only, std::nullopt, true) ==
          bytes({0x30, 0x06, 0x0a, 0x01, 0x01, 0x01, 0x01, 0xff}));
    // An empty cookie is present, not absent.
    CHECK(encode_sync_request(SyncMode::refresh_only, std::string(), false) ==
          bytes({0x30, 0x05, 0x0a, 0x01, 0x01, 0x04, 0x00}));
}

TEST_CASE("sync request control value: round trips, long cookies in long-form lengths") {
    const auto mode = GENERATE(SyncMode::refresh_only, SyncMode::refresh_and_persist);
    const bool reload = GENERATE(false, true);
    const std::size_t cookie_size = GENERATE(0u, 1u, 127u, 128u, 255u, 256u, 70000u);
    CAPTURE(static_cast<int>(mode), reload, cookie_size);
    const std::string cookie(cookie_size, 'c');
    const std::string der = encode_sync_request(mode, cookie, reload);

    // Build the expected bytes: the cookie's length is short form below 128, else 0x81/0x82/0x83 n.
    auto length = [](std::size_t n) {
        if (n < 0x80) return bytes({static_cast<unsigned char>(n)});
        if (n <= 0xff) return bytes({0x81, static_cast<unsigned char>(n)});
        if (n <= 0xffff) return bytes({0x82, static_cast<unsigned char>(n >> 8), static_cast<unsigned char>(n)});
        return bytes({0x83, static_cast<unsigned char>(n >> 16), static_cast<unsigned char>(n >> 8),
                      static_cast<unsigned char>(n)});
    };
    std::string content = bytes({0x0a, 0x01, static_cast<unsigned char>(mode)});
    content += bytes({0x04}) + length(cookie_size) + cookie;
    if (reload) content += bytes({0x01, 0x01, 0xff});
    CHECK(der == bytes({0x30}) + length(content.size()) + content);
}

TEST_CASE("sync state control value") {
    SECTION("add, no cookie") {
        // SEQUENCE { state add(1), entryUUID 16 bytes }: 3 + 2 + 16 = 21 = 0x15
        auto s = decode_sync_state(bytes({0x30, 0x15, 0x0a, 0x01, 0x01}) + kUuidHeader + kUuidA);
        REQUIRE(s);
        CHECK(s->state == SyncStateKind::add);
        CHECK(s->entry_uuid == kUuidA);
        CHECK_FALSE(s->cookie);
    }
    SECTION("every state, with a cookie") {
        const auto [value, kind] = GENERATE(table<unsigned char, SyncStateKind>({
            {0, SyncStateKind::present},
            {1, SyncStateKind::add},
            {2, SyncStateKind::modify},
            {3, SyncStateKind::remove},
        }));
        // ... , cookie "c1": 21 + 4 = 25 = 0x19
        auto s = decode_sync_state(bytes({0x30, 0x19, 0x0a, 0x01, value}) + kUuidHeader + kUuidB +
                                   bytes({0x04, 0x02, 'c', '1'}));
        REQUIRE(s);
        CHECK(s->state == kind);
        CHECK(s->entry_uuid == kUuidB);
        REQUIRE(s->cookie);
        CHECK(*s->cookie == "c1");
    }
    SECTION("an empty cookie is present") {
        auto s = decode_sync_state(bytes({0x30, 0x17, 0x0a, 0x01, 0x03}) + kUuidHeader + kUuidA + bytes({0x04, 0x00}));
        REQUIRE(s);
        CHECK(s->state == SyncStateKind::remove);
        REQUIRE(s->cookie);
        CHECK(s->cookie->empty());
    }
    SECTION("long-form lengths are BER too") {
        // 30 81 15: the sequence's length in long form (not DER, still valid BER)
        auto s = decode_sync_state(bytes({0x30, 0x81, 0x15, 0x0a, 0x01, 0x02}) + kUuidHeader + kUuidA);
        REQUIRE(s);
        CHECK(s->state == SyncStateKind::modify);
    }
}

TEST_CASE("sync state control value: what is refused") {
    const std::string good = bytes({0x30, 0x15, 0x0a, 0x01, 0x01}) + kUuidHeader + kUuidA;
    REQUIRE(decode_sync_state(good));

    SECTION("empty and truncated input") {
        CHECK_FALSE(decode_sync_state(""));
        for (std::size_t n = 1; n < good.size(); ++n) {
            CAPTURE(n);
            CHECK_FALSE(decode_sync_state(good.substr(0, n)));
        }
    }
    SECTION("trailing bytes, after the sequence or inside it") {
        CHECK_FALSE(decode_sync_state(good + bytes({0x00})));
        CHECK_FALSE(decode_sync_state(good + good));
        // An unknown INTEGER after the UUID, inside the sequence (its length 0x18 covers it).
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x18, 0x0a, 0x01, 0x01}) + kUuidHeader + kUuidA +
                                      bytes({0x02, 0x01, 0x00})));
        // The cookie followed by a second one.
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x19, 0x0a, 0x01, 0x01}) + kUuidHeader + kUuidA +
                                      bytes({0x04, 0x00, 0x04, 0x00})));
    }
    SECTION("wrong tags") {
        // SET instead of SEQUENCE; INTEGER instead of ENUMERATED; [0] instead of OCTET STRING;
        // a constructed OCTET STRING (0x24) for the UUID.
        CHECK_FALSE(decode_sync_state(bytes({0x31, 0x15, 0x0a, 0x01, 0x01}) + kUuidHeader + kUuidA));
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x15, 0x02, 0x01, 0x01}) + kUuidHeader + kUuidA));
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x15, 0x0a, 0x01, 0x01, 0x80, 0x10}) + kUuidA));
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x15, 0x0a, 0x01, 0x01, 0x24, 0x10}) + kUuidA));
        // The UUID before the state.
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x15}) + kUuidHeader + kUuidA + bytes({0x0a, 0x01, 0x01})));
        // A cookie in the UUID's place: the UUID is not optional.
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x07, 0x0a, 0x01, 0x01, 0x04, 0x02, 'c', '1'})));
    }
    SECTION("UUIDs of 15 and 17 bytes") {
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x14, 0x0a, 0x01, 0x01, 0x04, 0x0f}) + kUuidA.substr(0, 15)));
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x16, 0x0a, 0x01, 0x01, 0x04, 0x11}) + kUuidA + "x"));
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x05, 0x0a, 0x01, 0x01, 0x04, 0x00})));
    }
    SECTION("unknown or badly encoded states") {
        for (unsigned char state : {0x04, 0x07, 0x7f, 0x80, 0xff}) {
            CAPTURE(int(state));
            CHECK_FALSE(decode_sync_state(bytes({0x30, 0x15, 0x0a, 0x01, state}) + kUuidHeader + kUuidA));
        }
        // add(1) in two octets (not minimal), and an empty ENUMERATED.
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x16, 0x0a, 0x02, 0x00, 0x01}) + kUuidHeader + kUuidA));
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x14, 0x0a, 0x00}) + kUuidHeader + kUuidA));
    }
    SECTION("a sequence length that disagrees with the input") {
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x14, 0x0a, 0x01, 0x01}) + kUuidHeader + kUuidA));
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x16, 0x0a, 0x01, 0x01}) + kUuidHeader + kUuidA));
        // Indefinite length (0x80) is not allowed in LDAP (RFC 4511 5.1).
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x80, 0x0a, 0x01, 0x01}) + kUuidHeader + kUuidA +
                                      bytes({0x00, 0x00})));
        // A length of length beyond what a length can hold.
        CHECK_FALSE(decode_sync_state(bytes({0x30, 0x89, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x15, 0x0a, 0x01, 0x01}) +
                                      kUuidHeader + kUuidA));
    }
}

TEST_CASE("sync done control value") {
    SECTION("empty: no cookie, refreshDeletes FALSE by default") {
        auto d = decode_sync_done(bytes({0x30, 0x00}));
        REQUIRE(d);
        CHECK_FALSE(d->cookie);
        CHECK_FALSE(d->refresh_deletes);
    }
    SECTION("cookie and refreshDeletes TRUE") {
        auto d = decode_sync_done(bytes({0x30, 0x07, 0x04, 0x02, 'c', '1', 0x01, 0x01, 0xff}));
        REQUIRE(d);
        REQUIRE(d->cookie);
        CHECK(*d->cookie == "c1");
        CHECK(d->refresh_deletes);
    }
    SECTION("refreshDeletes alone; any non-zero octet is TRUE in BER") {
        auto d = decode_sync_done(bytes({0x30, 0x03, 0x01, 0x01, 0x01}));
        REQUIRE(d);
        CHECK_FALSE(d->cookie);
        CHECK(d->refresh_deletes);
    }
    SECTION("the default written out explicitly (BER allows it)") {
        auto d = decode_sync_done(bytes({0x30, 0x03, 0x01, 0x01, 0x00}));
        REQUIRE(d);
        CHECK_FALSE(d->refresh_deletes);
    }
    SECTION("a cookie of exactly kMaxCookieBytes") {
        static_assert(kMaxCookieBytes == 0x10000);
        // 04 83 01 00 00 <65536 bytes>, in 30 83 01 00 05
        auto d = decode_sync_done(bytes({0x30, 0x83, 0x01, 0x00, 0x05, 0x04, 0x83, 0x01, 0x00, 0x00}) +
                                  std::string(0x10000, 'k'));
        REQUIRE(d);
        CHECK(d->cookie->size() == kMaxCookieBytes);
    }
}

TEST_CASE("sync done control value: what is refused") {
    SECTION("oversized cookie: kMaxCookieBytes + 1") {
        CHECK_FALSE(decode_sync_done(bytes({0x30, 0x83, 0x01, 0x00, 0x06, 0x04, 0x83, 0x01, 0x00, 0x01}) +
                                     std::string(0x10001, 'k')));
    }
    SECTION("elements out of order, twice, or unknown") {
        CHECK_FALSE(decode_sync_done(bytes({0x30, 0x07, 0x01, 0x01, 0xff, 0x04, 0x02, 'c', '1'})));
        CHECK_FALSE(decode_sync_done(bytes({0x30, 0x06, 0x01, 0x01, 0xff, 0x01, 0x01, 0xff})));
        CHECK_FALSE(decode_sync_done(bytes({0x30, 0x03, 0x02, 0x01, 0x01})));
    }
    SECTION("a BOOLEAN that is not one octet") {
        CHECK_FALSE(decode_sync_done(bytes({0x30, 0x02, 0x01, 0x00})));
        CHECK_FALSE(decode_sync_done(bytes({0x30, 0x04, 0x01, 0x02, 0x00, 0xff})));
    }
    SECTION("truncated, trailing, wrong outer tag") {
        const std::string good = bytes({0x30, 0x07, 0x04, 0x02, 'c', '1', 0x01, 0x01, 0xff});
        REQUIRE(decode_sync_done(good));
        for (std::size_t n = 0; n < good.size(); ++n) {
            CAPTURE(n);
            CHECK_FALSE(decode_sync_done(good.substr(0, n)));
        }
        CHECK_FALSE(decode_sync_done(good + bytes({0x30, 0x00})));
        CHECK_FALSE(decode_sync_done(bytes({0xa0, 0x00})));
        CHECK_FALSE(decode_sync_done(bytes({0x04, 0x00})));
    }
}

TEST_CASE("sync info message") {
    SECTION("newcookie [0]") {
        auto i = decode_sync_info(bytes({0x80, 0x02, 'c', '1'}));
        REQUIRE(i);
        CHECK(i->kind == SyncInfo::Kind::new_cookie);
        REQUIRE(i->cookie);
        CHECK(*i->cookie == "c1");
    }
    SECTION("refreshDelete [1], empty: refreshDone TRUE by default") {
        auto i = decode_sync_info(bytes({0xa1, 0x00}));
        REQUIRE(i);
        CHECK(i->kind == SyncInfo::Kind::refresh_delete);
        CHECK_FALSE(i->cookie);
        CHECK(i->refresh_done);
    }
    SECTION("refreshPresent [2] with cookie and refreshDone FALSE") {
        auto i = decode_sync_info(bytes({0xa2, 0x07, 0x04, 0x02, 'c', '1', 0x01, 0x01, 0x00}));
        REQUIRE(i);
        CHECK(i->kind == SyncInfo::Kind::refresh_present);
        REQUIRE(i->cookie);
        CHECK(*i->cookie == "c1");
        CHECK_FALSE(i->refresh_done);
    }
    SECTION("refreshDelete [1] with refreshDone TRUE written out") {
        auto i = decode_sync_info(bytes({0xa1, 0x03, 0x01, 0x01, 0xff}));
        REQUIRE(i);
        CHECK(i->kind == SyncInfo::Kind::refresh_delete);
        CHECK(i->refresh_done);
    }
    SECTION("syncIdSet [3]: cookie, refreshDeletes TRUE, two UUIDs") {
        // a3 2d { 04 02 c1 (4), 01 01 ff (3), 31 24 { 04 10 A, 04 10 B } (38) } = 45 = 0x2d
        auto i = decode_sync_info(bytes({0xa3, 0x2d, 0x04, 0x02, 'c', '1', 0x01, 0x01, 0xff, 0x31, 0x24}) +
                                  kUuidHeader + kUuidA + kUuidHeader + kUuidB);
        REQUIRE(i);
        CHECK(i->kind == SyncInfo::Kind::sync_id_set);
        REQUIRE(i->cookie);
        CHECK(*i->cookie == "c1");
        CHECK(i->refresh_deletes);
        CHECK(i->uuids == std::vector<std::string>{kUuidA, kUuidB});
    }
    SECTION("syncIdSet [3]: the set alone (present UUIDs), and an empty set") {
        auto i = decode_sync_info(bytes({0xa3, 0x14, 0x31, 0x12}) + kUuidHeader + kUuidA);
        REQUIRE(i);
        CHECK(i->kind == SyncInfo::Kind::sync_id_set);
        CHECK_FALSE(i->cookie);
        CHECK_FALSE(i->refresh_deletes);
        CHECK(i->uuids == std::vector<std::string>{kUuidA});

        auto empty = decode_sync_info(bytes({0xa3, 0x02, 0x31, 0x00}));
        REQUIRE(empty);
        CHECK(empty->uuids.empty());
    }
}

TEST_CASE("sync info message: what is refused") {
    SECTION("unknown or wrongly formed CHOICE tags") {
        CHECK_FALSE(decode_sync_info(""));
        CHECK_FALSE(decode_sync_info(bytes({0xa4, 0x00})));        // [4]
        CHECK_FALSE(decode_sync_info(bytes({0xa0, 0x00})));        // [0] constructed
        CHECK_FALSE(decode_sync_info(bytes({0x81, 0x00})));        // [1] primitive
        CHECK_FALSE(decode_sync_info(bytes({0x30, 0x00})));        // a bare SEQUENCE
        CHECK_FALSE(decode_sync_info(bytes({0x04, 0x02, 'c', '1'})));  // newcookie without its tag
    }
    SECTION("trailing bytes") {
        CHECK_FALSE(decode_sync_info(bytes({0x80, 0x02, 'c', '1', 0x00})));
        CHECK_FALSE(decode_sync_info(bytes({0xa1, 0x00, 0xa1, 0x00})));
        // refreshPresent's sequence holding a third element
        CHECK_FALSE(decode_sync_info(bytes({0xa2, 0x05, 0x01, 0x01, 0x00, 0x04, 0x00})));
        // a UUID after the set, inside syncIdSet
        CHECK_FALSE(decode_sync_info(bytes({0xa3, 0x26, 0x31, 0x12}) + kUuidHeader + kUuidA + kUuidHeader + kUuidB));
    }
    SECTION("truncated") {
        const std::string good = bytes({0xa3, 0x2d, 0x04, 0x02, 'c', '1', 0x01, 0x01, 0xff, 0x31, 0x24}) +
                                 kUuidHeader + kUuidA + kUuidHeader + kUuidB;
        REQUIRE(decode_sync_info(good));
        for (std::size_t n = 0; n < good.size(); ++n) {
            CAPTURE(n);
            CHECK_FALSE(decode_sync_info(good.substr(0, n)));
        }
    }
    SECTION("syncIdSet: a 15-byte UUID, a member that is not an OCTET STRING, no set") {
        CHECK_FALSE(decode_sync_info(bytes({0xa3, 0x13, 0x31, 0x11, 0x04, 0x0f}) + kUuidA.substr(0, 15)));
        CHECK_FALSE(decode_sync_info(bytes({0xa3, 0x14, 0x31, 0x12, 0x80, 0x10}) + kUuidA));
        CHECK_FALSE(decode_sync_info(bytes({0xa3, 0x14, 0x30, 0x12}) + kUuidHeader + kUuidA));  // SEQUENCE OF
        CHECK_FALSE(decode_sync_info(bytes({0xa3, 0x04, 0x04, 0x02, 'c', '1'})));
        // the set's length shorter than its members
        CHECK_FALSE(decode_sync_info(bytes({0xa3, 0x14, 0x31, 0x11}) + kUuidHeader + kUuidA));
    }
    SECTION("oversized cookies") {
        CHECK_FALSE(decode_sync_info(bytes({0x80, 0x83, 0x01, 0x00, 0x01}) + std::string(0x10001, 'k')));
        CHECK_FALSE(decode_sync_info(bytes({0xa1, 0x83, 0x01, 0x00, 0x06, 0x04, 0x83, 0x01, 0x00, 0x01}) +
                                     std::string(0x10001, 'k')));
        auto at_limit = decode_sync_info(bytes({0x80, 0x83, 0x01, 0x00, 0x00}) + std::string(0x10000, 'k'));
        REQUIRE(at_limit);
        CHECK(at_limit->cookie->size() == kMaxCookieBytes);
    }
}

TEST_CASE("syncIdSet UUID count limit") {
    // kMaxSyncIdSetUuids members of 18 bytes: 18,000,000 = 0x112a880; the set's header is
    // 31 84 01 12 a8 80 (6 bytes), so [3]'s content is 0x112a886.
    static_assert(kMaxSyncIdSetUuids == 1'000'000);
    std::string member = kUuidHeader + kUuidA;
    std::string members;
    members.reserve(member.size() * (kMaxSyncIdSetUuids + 1));
    for (std::size_t i = 0; i < kMaxSyncIdSetUuids; ++i) members += member;

    auto at_limit = decode_sync_info(bytes({0xa3, 0x84, 0x01, 0x12, 0xa8, 0x86, 0x31, 0x84, 0x01, 0x12, 0xa8, 0x80}) + members);
    REQUIRE(at_limit);
    CHECK(at_limit->uuids.size() == kMaxSyncIdSetUuids);

    // One more: 18,000,018 = 0x112a892, content 0x112a898.
    members += member;
    CHECK_FALSE(decode_sync_info(bytes({0xa3, 0x84, 0x01, 0x12, 0xa8, 0x98, 0x31, 0x84, 0x01, 0x12, 0xa8, 0x92}) + members));
}

TEST_CASE("format_uuid") {
    CHECK(format_uuid(kUuidA) == "00112233-4455-6677-8899-aabbccddeeff");
    CHECK(format_uuid(kUuidB) == "ffeeddcc-bbaa-9988-7766-554433221100");
    CHECK(format_uuid("") == "");
    CHECK(format_uuid(bytes({0xde, 0xad, 0xbe, 0xef})) == "deadbeef");
    CHECK(format_uuid(kUuidA.substr(0, 15)) == "00112233445566778899aabbccddee");
}
