// `coexist-map digest` (design 9, 13.6): one line that two relays can compare. A SHA-256
// (Nettle, from Debian: already under libldap through GnuTLS) over a canonical text of
// everything that decides routing, in key order: the routing settings of the INI, then each
// user (state, override, target) and each alias. Times, batches, owners' DNs and the audit
// trail are left out: they differ between relays that route identically.
#include <nettle/sha2.h>

#include <ctime>
#include <fmt/format.h>
#include <ostream>

#include "coexist/map_store.hpp"
#include "commands.hpp"

namespace coexist::tool {

namespace {

class Sha256 {
public:
    Sha256() { sha256_init(&ctx_); }
    // Each field is length-prefixed, so no two different inputs give the same byte stream.
    void field(std::string_view s) {
        const std::string n = fmt::format("{}:", s.size());
        sha256_update(&ctx_, n.size(), reinterpret_cast<const std::uint8_t*>(n.data()));
        sha256_update(&ctx_, s.size(), reinterpret_cast<const std::uint8_t*>(s.data()));
    }
    std::string hex() {
        std::uint8_t d[SHA256_DIGEST_SIZE];
        sha256_digest(&ctx_, sizeof d, d);
        std::string out;
        for (auto b : d) out += fmt::format("{:02x}", b);
        return out;
    }

private:
    sha256_ctx ctx_{};
};

}  // namespace

int digest(const Config& c, std::ostream& out) {
    Sha256 h;
    h.field("coexist-digest 1");
    h.field(c.recipient_delimiter);
    h.field(c.keep_extension ? "keep_extension" : "strip_extension");
    h.field(to_string(c.unknown_recipient));
    for (const auto& d : c.domains) {  // in the INI's order: the order find_domain() tries them
        h.field("domain");
        h.field(d.name);
        h.field(d.routing_domain);
        h.field(fmt::format("{}", fmt::join(d.aliases, " ")));
        h.field(d.unknown_recipient ? to_string(*d.unknown_recipient) : "-");
        // Rewrite-mode domains hash as before transport mode existed: digests of unchanged
        // relays stay comparable across the upgrade.
        if (d.mode == DomainMode::transport) h.field("transport " + d.new_system_nexthop);
    }
    std::size_t users = 0, aliases = 0, overrides = 0, pending = 0;
    const auto now = static_cast<std::int64_t>(::time(nullptr));
    MapStore store(c.map_path, c.map_size, MapStore::Mode::read_only);
    store.read([&](MapTxn& t) {
        t.for_each_user([&](std::string_view key, const UserRecord& stored) {
            // A due schedule counts as applied: a relay whose map has stored it and one whose
            // map has not route alike, so they must digest alike.
            UserRecord r = stored;
            r.apply_due(now);
            ++users;
            h.field("user");
            h.field(key);
            h.field(to_string(r.state));
            h.field(r.override_state ? to_string(*r.override_state) : "-");
            if (r.override_state) ++overrides;
            h.field(r.target);
            if (r.pending_state) {
                ++pending;
                h.field(fmt::format("pending {} {}", to_string(*r.pending_state), r.pending_at));
            }
            return true;
        });
        t.for_each_alias([&](std::string_view alias, std::string_view primary) {
            ++aliases;
            h.field("alias");
            h.field(alias);
            h.field(primary);
            return true;
        });
    });
    out << fmt::format("sha256:{} users={} aliases={} overrides={} pending={}\n", h.hex(), users, aliases, overrides,
                       pending);
    return kOk;
}

}  // namespace coexist::tool
