// RFC 4533 control values with lber. The decoders take bytes straight from the server and are
// strict: one exact shape per message, every length checked before anything is copied, and any
// doubt (unknown tag, unknown enum value, a byte left over) refuses the whole value. The
// ASN.1 module of RFC 4533 uses IMPLICIT TAGS (as LDAP's own, RFC 4511), so a context tag
// replaces the tag it annotates: newcookie [0] is primitive 0x80, [1] SEQUENCE is 0xa1.
#include "sync_controls.hpp"

#include <lber.h>

#include <algorithm>
#include <memory>
#include <new>

namespace coexist::directory {
namespace {

// The universal tags these values use, and Sync Info's CHOICE alternatives (RFC 4533 2.5).
constexpr ber_tag_t kTagBoolean = 0x01;
constexpr ber_tag_t kTagOctetString = 0x04;
constexpr ber_tag_t kTagEnumerated = 0x0a;
constexpr ber_tag_t kTagSequence = 0x30;
constexpr ber_tag_t kTagSet = 0x31;
constexpr ber_tag_t kTagNewCookie = 0x80;       // [0] syncCookie, primitive
constexpr ber_tag_t kTagRefreshDelete = 0xa1;   // [1] SEQUENCE
constexpr ber_tag_t kTagRefreshPresent = 0xa2;  // [2] SEQUENCE
constexpr ber_tag_t kTagSyncIdSet = 0xa3;       // [3] SEQUENCE
constexpr std::size_t kUuidBytes = 16;

struct BerFree {
    void operator()(BerElement* ber) const noexcept { ber_free(ber, 1); }
};
using BerPtr = std::unique_ptr<BerElement, BerFree>;

// A cursor over one received value (a private copy: ber_init copies the bytes, so lber may
// write its in-place terminators without touching the caller's buffer).
//
// Every constructed element in these messages is the last element of its parent, and the
// outermost one must end exactly where the input ends. So "the end of the current container"
// is always the end of the buffer: enter() insists that a container's length is exactly what
// is left, and lber already refuses any element longer than what is left. No element can then
// reach past its container, and done() (nothing left) is the end of every open container.
class BerReader {
public:
    explicit BerReader(std::string_view bytes) {
        // ber_init takes a non-const berval but only reads it (it copies into the element).
        berval bv{static_cast<ber_len_t>(bytes.size()), const_cast<char*>(bytes.data())};
        ber_.reset(ber_init(&bv));
    }

    bool ok() const { return ber_ != nullptr; }

    // The tag of the next element and its content length; LBER_DEFAULT at the end or when the
    // element's header is malformed or its length runs past the buffer.
    ber_tag_t peek(ber_len_t& len) { return ber_peek_tag(ber_.get(), &len); }

    ber_len_t remaining() {
        ber_len_t left = 0;
        // Cannot fail on a live element; if it ever did, "one byte left" makes every caller refuse.
        if (ber_get_option(ber_.get(), LBER_OPT_REMAINING_BYTES, &left) != LBER_OPT_SUCCESS) return 1;
        return left;
    }
    bool done() { return remaining() == 0; }

    // Steps into a constructed element with this tag that fills the rest of the input.
    bool enter(ber_tag_t tag) {
        ber_len_t len = 0;
        if (peek(len) != tag) return false;
        if (ber_skip_tag(ber_.get(), &len) != tag) return false;
        return len == remaining();
    }

    // An OCTET STRING (or the implicitly tagged [0] cookie) of at most max_len bytes.
    bool octets(ber_tag_t tag, std::size_t max_len, std::string& out) {
        ber_len_t len = 0;
        if (peek(len) != tag || len > max_len) return false;
        berval bv{0, nullptr};
        // "m": the value in place, no allocation; tag and length were checked just above.
        if (ber_scanf(ber_.get(), "m", &bv) == LBER_ERROR || bv.bv_len != len) return false;
        out.assign(bv.bv_val != nullptr ? bv.bv_val : "", bv.bv_len);
        return true;
    }

    // A BOOLEAN: one content octet (X.690 8.2.1), any non-zero value is TRUE (8.2.2).
    bool boolean(bool& out) {
        ber_len_t len = 0;
        if (peek(len) != kTagBoolean || len != 1) return false;
        ber_int_t value = 0;
        if (ber_scanf(ber_.get(), "b", &value) == LBER_ERROR) return false;
        out = value != 0;
        return true;
    }

    // An ENUMERATED of one content octet: every value RFC 4533 defines is below 128, and a
    // minimal encoding (X.690 8.3.2, which BER requires too) of such a value is one octet.
    bool enumerated(ber_int_t& out) {
        ber_len_t len = 0;
        if (peek(len) != kTagEnumerated || len != 1) return false;
        return ber_scanf(ber_.get(), "e", &out) != LBER_ERROR;
    }

    // The optional cookie that opens every sequence that has one.
    bool optional_cookie(std::optional<std::string>& out) {
        ber_len_t len = 0;
        if (done() || peek(len) != kTagOctetString) return true;
        std::string cookie;
        if (!octets(kTagOctetString, kMaxCookieBytes, cookie)) return false;
        out = std::move(cookie);
        return true;
    }

    // A BOOLEAN with a DEFAULT: absent means the default. A sender may still encode the
    // default explicitly (BER allows it, only DER forbids it), and that is accepted.
    bool optional_boolean(bool& out) {
        ber_len_t len = 0;
        if (done() || peek(len) != kTagBoolean) return true;
        return boolean(out);
    }

    // SET OF syncUUID: each exactly 16 bytes, at most kMaxSyncIdSetUuids of them. It is the
    // last element of syncIdSet, so it, too, must fill the rest of the input.
    bool uuid_set(std::vector<std::string>& out) {
        ber_len_t set_len = 0;
        if (peek(set_len) != kTagSet) return false;
        ber_len_t len = 0;
        char* last = nullptr;
        // Steps into the set (last = its end) and peeks at its first member.
        ber_tag_t tag = ber_first_element(ber_.get(), &len, &last);
        if (last == nullptr || set_len != remaining()) return false;
        if (tag == LBER_DEFAULT && !done()) return false;  // a malformed first member
        // Each member takes 18 bytes on the wire, so the set's length bounds the count before
        // anything is allocated; reserve() then costs no more than the input already did.
        out.reserve(std::min<std::size_t>(set_len / (kUuidBytes + 2), kMaxSyncIdSetUuids));
        for (; tag != LBER_DEFAULT; tag = ber_next_element(ber_.get(), &len, last)) {
            if (out.size() == kMaxSyncIdSetUuids) return false;
            std::string uuid;
            if (tag != kTagOctetString || len != kUuidBytes || !octets(kTagOctetString, kUuidBytes, uuid))
                return false;
            out.push_back(std::move(uuid));
        }
        // ber_next_element also stops on a malformed member; only a clean end counts.
        return done();
    }

private:
    BerPtr ber_;
};

// syncRefreshDelete / syncRefreshPresent content: { cookie OPTIONAL, refreshDone DEFAULT TRUE }.
bool decode_refresh(BerReader& in, SyncInfo& info) {
    return in.optional_cookie(info.cookie) && in.optional_boolean(info.refresh_done) && in.done();
}

// syncIdSet content: { cookie OPTIONAL, refreshDeletes DEFAULT FALSE, syncUUIDs SET OF }.
bool decode_id_set(BerReader& in, SyncInfo& info) {
    return in.optional_cookie(info.cookie) && in.optional_boolean(info.refresh_deletes) &&
           in.uuid_set(info.uuids) && in.done();
}

}  // namespace

std::string encode_sync_request(SyncMode mode, const std::optional<std::string>& cookie, bool reload_hint) {
    // DER, as a control value should be: reloadHint FALSE is its DEFAULT and left out.
    BerPtr ber(ber_alloc_t(LBER_USE_DER));
    if (!ber) throw std::bad_alloc();
    // lber fails only when it cannot allocate; that is the one way this function can fail.
    auto check = [](int rc) {
        if (rc == -1) throw std::bad_alloc();
    };
    check(ber_printf(ber.get(), "{e", static_cast<ber_int_t>(mode)));
    if (cookie) {
        berval bv{static_cast<ber_len_t>(cookie->size()), const_cast<char*>(cookie->data())};
        check(ber_printf(ber.get(), "O", &bv));
    }
    if (reload_hint) check(ber_printf(ber.get(), "b", static_cast<ber_int_t>(1)));
    check(ber_printf(ber.get(), "}"));
    berval out{0, nullptr};
    // flatten2 without allocation: out points into ber, copied before ber is freed.
    check(ber_flatten2(ber.get(), &out, 0));
    return std::string(out.bv_val != nullptr ? out.bv_val : "", out.bv_len);
}

std::optional<SyncState> decode_sync_state(std::string_view ber) {
    BerReader in(ber);
    if (!in.ok() || !in.enter(kTagSequence)) return std::nullopt;
    ber_int_t state = -1;
    // present(0) .. delete(3); anything else is a state this client cannot act on.
    if (!in.enumerated(state) || state < 0 || state > 3) return std::nullopt;
    SyncState out;
    out.state = static_cast<SyncStateKind>(state);
    if (!in.octets(kTagOctetString, kUuidBytes, out.entry_uuid) || out.entry_uuid.size() != kUuidBytes)
        return std::nullopt;
    if (!in.optional_cookie(out.cookie) || !in.done()) return std::nullopt;
    return out;
}

std::optional<SyncDone> decode_sync_done(std::string_view ber) {
    BerReader in(ber);
    if (!in.ok() || !in.enter(kTagSequence)) return std::nullopt;
    SyncDone out;
    if (!in.optional_cookie(out.cookie) || !in.optional_boolean(out.refresh_deletes) || !in.done())
        return std::nullopt;
    return out;
}

std::optional<SyncInfo> decode_sync_info(std::string_view ber) {
    BerReader in(ber);
    if (!in.ok()) return std::nullopt;
    SyncInfo out;
    ber_len_t len = 0;
    const ber_tag_t choice = in.peek(len);
    switch (choice) {
    case kTagNewCookie: {
        out.kind = SyncInfo::Kind::new_cookie;
        std::string cookie;
        if (!in.octets(kTagNewCookie, kMaxCookieBytes, cookie) || !in.done()) return std::nullopt;
        out.cookie = std::move(cookie);
        return out;
    }
    case kTagRefreshDelete:
    case kTagRefreshPresent: {
        out.kind = choice == kTagRefreshDelete ? SyncInfo::Kind::refresh_delete : SyncInfo::Kind::refresh_present;
        if (!in.enter(choice) || !decode_refresh(in, out)) return std::nullopt;
        return out;
    }
    case kTagSyncIdSet:
        out.kind = SyncInfo::Kind::sync_id_set;
        if (!in.enter(kTagSyncIdSet) || !decode_id_set(in, out)) return std::nullopt;
        return out;
    default:
        return std::nullopt;
    }
}

std::string format_uuid(std::string_view raw) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(raw.size() * 2 + 4);
    for (std::size_t i = 0; i < raw.size(); ++i) {
        // The dashes of RFC 4122's text form, after bytes 4, 6, 8 and 10.
        if (raw.size() == kUuidBytes && (i == 4 || i == 6 || i == 8 || i == 10)) out += '-';
        const auto byte = static_cast<unsigned char>(raw[i]);
        out += kHex[byte >> 4];
        out += kHex[byte & 0x0f];
    }
    return out;
}

}  // namespace coexist::directory
