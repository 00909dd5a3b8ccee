// Fuzz target: RFC 4533 control values as an LDAP server sends them. The first byte picks the
// decoder (0 Sync State, 1 Sync Done, 2 Sync Info, 3 the request encoder); the rest is the value.
// Whatever comes in, a decoder returns nullopt or a value within the limits, and a decoded value
// written back as DER by the model encoder below decodes to the same value. The request encoder
// must produce exactly the model's DER.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sync_controls.hpp"

namespace {

using namespace coexist::directory;

// A DER element: tag, minimal length, content. Independent of lber on purpose.
std::string der(unsigned char tag, const std::string& content) {
    std::string out(1, static_cast<char>(tag));
    const std::size_t n = content.size();
    if (n < 0x80) {
        out += static_cast<char>(n);
    } else {
        std::string len;
        for (std::size_t v = n; v != 0; v >>= 8) len.insert(len.begin(), static_cast<char>(v & 0xff));
        out += static_cast<char>(0x80 | len.size());
        out += len;
    }
    return out + content;
}

std::string der_bool(bool value) { return der(0x01, std::string(1, value ? '\xff' : '\0')); }
std::string der_cookie(const std::optional<std::string>& cookie) { return cookie ? der(0x04, *cookie) : ""; }

std::string model_state(const SyncState& s) {
    return der(0x30, der(0x0a, std::string(1, static_cast<char>(s.state))) + der(0x04, s.entry_uuid) +
                         der_cookie(s.cookie));
}

std::string model_done(const SyncDone& d) {
    return der(0x30, der_cookie(d.cookie) + (d.refresh_deletes ? der_bool(true) : ""));
}

std::string model_info(const SyncInfo& i) {
    switch (i.kind) {
    case SyncInfo::Kind::new_cookie:
        return der(0x80, i.cookie.value_or(""));
    case SyncInfo::Kind::refresh_delete:
    case SyncInfo::Kind::refresh_present:
        return der(i.kind == SyncInfo::Kind::refresh_delete ? 0xa1 : 0xa2,
                   der_cookie(i.cookie) + (i.refresh_done ? "" : der_bool(false)));
    case SyncInfo::Kind::sync_id_set: {
        std::string set;
        for (const auto& uuid : i.uuids) set += der(0x04, uuid);
        return der(0xa3, der_cookie(i.cookie) + (i.refresh_deletes ? der_bool(true) : "") + der(0x31, set));
    }
    }
    __builtin_trap();
}

bool cookie_ok(const std::optional<std::string>& cookie) { return !cookie || cookie->size() <= kMaxCookieBytes; }

void check_state(std::string_view value) {
    const auto s = decode_sync_state(value);
    if (!s) return;
    if (s->entry_uuid.size() != 16 || !cookie_ok(s->cookie)) __builtin_trap();
    const int state = static_cast<int>(s->state);
    if (state < 0 || state > 3) __builtin_trap();
    const auto again = decode_sync_state(model_state(*s));
    if (!again || again->state != s->state || again->entry_uuid != s->entry_uuid || again->cookie != s->cookie)
        __builtin_trap();
}

void check_done(std::string_view value) {
    const auto d = decode_sync_done(value);
    if (!d) return;
    if (!cookie_ok(d->cookie)) __builtin_trap();
    const auto again = decode_sync_done(model_done(*d));
    if (!again || again->cookie != d->cookie || again->refresh_deletes != d->refresh_deletes) __builtin_trap();
}

void check_info(std::string_view value) {
    const auto i = decode_sync_info(value);
    if (!i) return;
    if (!cookie_ok(i->cookie) || i->uuids.size() > kMaxSyncIdSetUuids) __builtin_trap();
    if (i->kind == SyncInfo::Kind::new_cookie && !i->cookie) __builtin_trap();
    if (i->kind != SyncInfo::Kind::sync_id_set && !i->uuids.empty()) __builtin_trap();
    for (const auto& uuid : i->uuids)
        if (uuid.size() != 16) __builtin_trap();
    const auto again = decode_sync_info(model_info(*i));
    if (!again || again->kind != i->kind || again->cookie != i->cookie || again->uuids != i->uuids) __builtin_trap();
    if (i->kind == SyncInfo::Kind::refresh_delete || i->kind == SyncInfo::Kind::refresh_present)
        if (again->refresh_done != i->refresh_done) __builtin_trap();
    if (i->kind == SyncInfo::Kind::sync_id_set && again->refresh_deletes != i->refresh_deletes) __builtin_trap();
}

// The request: the value's first byte chooses mode, cookie presence and reloadHint.
void check_request(std::string_view value) {
    const unsigned char flags = value.empty() ? 0 : static_cast<unsigned char>(value[0]);
    const auto mode = (flags & 1) ? SyncMode::refresh_and_persist : SyncMode::refresh_only;
    const bool reload = (flags & 2) != 0;
    std::optional<std::string> cookie;
    if (flags & 4) cookie = std::string(value.empty() ? value : value.substr(1));
    const std::string expected = der(0x30, der(0x0a, std::string(1, static_cast<char>(mode))) + der_cookie(cookie) +
                                               (reload ? der_bool(true) : ""));
    if (encode_sync_request(mode, cookie, reload) != expected) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::string_view value(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] % 4) {
    case 0: check_state(value); break;
    case 1: check_done(value); break;
    case 2: check_info(value); break;
    case 3: check_request(value); break;
    }
    return 0;
}
