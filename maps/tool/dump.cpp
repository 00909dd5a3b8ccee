// `coexist-map dump`: the whole map, audit trail included, as JSON Lines (dump_format.hpp), read
// in one read transaction so the lines are one consistent moment of the map.
//
// What is left out, and why: the meta keys the map rebuilds itself (schema version, which the
// header carries; the audit sequence, which restore takes from the entries; the per-domain user
// counts) and `directory_following`, which describes a follower process running on this host.
// The directory's cookie is kept: the dump is the map as it was at that cookie, so a follower
// on the restored map resumes from it correctly (or reads in full, when the cookie is not valid
// for its server and view). So are a directory user's hidden aliases, part of that view.
#include <unistd.h>

#include <ctime>
#include <ostream>

#include "coexist/map_store.hpp"
#include "commands.hpp"
#include "dump_format.hpp"

namespace coexist::tool {

namespace {

using dump_format::Json;
using dump_format::text;

bool dumped_meta(std::string_view key) { return !derived_meta_key(key) && key != meta::kDirectoryFollowing; }

std::string host_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return {};
    return buf;
}

Json state_or_null(const std::optional<State>& s) {
    return s ? Json(std::string(to_string(*s))) : Json(nullptr);
}

void write_line(std::ostream& out, const Json& j) {
    // Strict: text() has made every string valid UTF-8 already.
    out << j.dump() << '\n';
}

}  // namespace

int dump(const Config& c, std::ostream& out) {
    MapStore store(c.map_path, c.map_size, MapStore::Mode::read_only);
    store.read([&](MapTxn& t) {
        std::size_t meta_lines = 0;
        t.for_each_meta([&](std::string_view key, std::string_view) {
            meta_lines += dumped_meta(key);
            return true;
        });
        const std::string schema = t.schema_version();
        Json header;
        header["coexist_dump"] = dump_format::kFormatVersion;
        header["schema"] = std::stoi(schema.empty() ? std::string("0") : schema);
        header["version"] = COEXIST_VERSION;
        header["created"] = format_time(static_cast<long long>(std::time(nullptr)));
        header["host"] = text(host_name());
        header["users"] = t.user_count();
        header["aliases"] = t.alias_count();
        header["audit"] = t.audit_count();
        header["meta"] = meta_lines;
        write_line(out, header);

        t.for_each_meta([&](std::string_view key, std::string_view value) {
            if (dumped_meta(key)) write_line(out, Json{{"meta", text(key)}, {"value", text(value)}});
            return true;
        });
        t.for_each_user([&](std::string_view key, const UserRecord& r) {
            Json j;
            j["user"] = text(key);
            j["state"] = to_string(r.state);
            j["target"] = text(r.target);
            j["batch"] = text(r.batch);
            j["changed"] = r.changed;
            j["owner"] = to_string(r.owner);
            j["override"] = state_or_null(r.override_state);
            j["dn"] = text(r.dn);
            j["entryUUID"] = text(r.entry_uuid);
            j["pending"] = r.pending_state ? Json{{"state", to_string(*r.pending_state)}, {"at", r.pending_at}}
                                           : Json(nullptr);
            // Only where there are some: a dump without them is restored by earlier versions too.
            if (r.owner == Owner::directory) {
                const auto hidden = t.hidden_aliases_of(key);
                if (!hidden.empty()) {
                    Json list = Json::array();
                    for (const auto& a : hidden) list.push_back(text(a));
                    j["hidden_aliases"] = std::move(list);
                }
            }
            write_line(out, j);
            return true;
        });
        t.for_each_alias([&](std::string_view alias, std::string_view primary) {
            write_line(out, Json{{"alias", text(alias)}, {"primary", text(primary)}});
            return true;
        });
        t.for_each_audit([&](const AuditEntry& e) {
            Json j;
            j["audit"] = text(e.address);
            j["sequence"] = e.sequence;
            j["time"] = e.time;
            j["by"] = text(e.who);
            j["command"] = text(e.command);
            j["old"] = text(e.old_value);
            j["new"] = text(e.new_value);
            j["batch"] = text(e.batch);
            write_line(out, j);
            return true;
        });
    });
    out.flush();
    if (!out) throw MapUnavailable("dump: writing to standard output failed");
    return kOk;
}

}  // namespace coexist::tool
