// `coexist-map restore FILE|- [--replace]`: a dump (dump_format.hpp) written back into a map, in
// one write transaction: every line is checked, and one bad line leaves the map as it was.
// Keys are checked as import checks them (an address in a managed domain of this host's
// config, in canonical form; a target outside them), so a dump restored where a domain is
// not managed is refused, not half-routed. Nothing is added to the audit trail (the restored
// history is the history); the restore itself is logged to syslog.
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ostream>
#include <unordered_set>
#include <variant>
#include <vector>

#include "coexist/log.hpp"
#include "coexist/log_text.hpp"
#include "coexist/map_store.hpp"
#include "coexist/user_key.hpp"
#include "commands.hpp"
#include "dump_format.hpp"

namespace coexist::tool {

namespace {

using dump_format::Json;

std::string read_input(const std::string& path) {
    std::FILE* f = path == "-" ? stdin : std::fopen(path.c_str(), "re");
    if (!f) throw DataError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
    struct stat st{};
    if (::fstat(::fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        if (f != stdin) std::fclose(f);
        throw DataError(fmt::format("{}: is a directory, not a dump file", path));
    }
    std::string text;
    char buf[1 << 16];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    const int read_errno = std::ferror(f) ? errno : 0;
    if (f != stdin) std::fclose(f);
    if (read_errno) throw DataError(fmt::format("{}: cannot read: {}", path, std::strerror(read_errno)));
    return text;
}

// One line of the dump, with where it came from for every error.
class Line {
public:
    Line(const std::string& file, std::size_t number, Json j) : file_(file), number_(number), j_(std::move(j)) {}

    [[noreturn]] void fail(std::string_view reason) const {
        throw DataError(fmt::format("{}:{}: {}", file_, number_, reason));
    }
    // Refuses a field this build does not know: it may carry something that matters.
    void only(std::initializer_list<std::string_view> names) const {
        for (const auto& [k, v] : j_.items()) {
            bool known = false;
            for (auto n : names) known = known || k == n;
            if (!known) fail(fmt::format("unknown field \"{}\"", k));
        }
    }
    std::string text(std::string_view name, bool required = false) const {
        const auto it = j_.find(name);
        if (it == j_.end()) {
            if (required) fail(fmt::format("\"{}\" missing", name));
            return {};
        }
        auto b = dump_format::bytes_of(*it);
        if (!b) fail(fmt::format("\"{}\" is not a string", name));
        return *b;
    }
    std::int64_t integer(std::string_view name, bool required = false) const {
        const auto it = j_.find(name);
        if (it == j_.end()) {
            if (required) fail(fmt::format("\"{}\" missing", name));
            return 0;
        }
        if (!it->is_number_integer() || (it->is_number_unsigned() && it->get<std::uint64_t>() > INT64_MAX) ||
            it->get<std::int64_t>() < 0)
            fail(fmt::format("\"{}\" is not a whole number of at least 0", name));
        return it->get<std::int64_t>();
    }
    std::optional<State> state(std::string_view name, bool required = false) const {
        const auto it = j_.find(name);
        if (it == j_.end() || it->is_null()) {
            if (required) fail(fmt::format("\"{}\" missing", name));
            return std::nullopt;
        }
        const auto s = it->is_string() ? parse_state(it->get<std::string>()) : std::nullopt;
        if (!s) fail(fmt::format("\"{}\": expected source, migrated or dual", name));
        return s;
    }
    // An array of texts (`hidden_aliases`); empty when absent.
    std::vector<std::string> texts(std::string_view name) const {
        const auto it = j_.find(name);
        if (it == j_.end()) return {};
        if (!it->is_array()) fail(fmt::format("\"{}\" is not an array", name));
        std::vector<std::string> out;
        for (const auto& v : *it) {
            auto b = dump_format::bytes_of(v);
            if (!b) fail(fmt::format("\"{}\" holds a value that is not a string", name));
            out.push_back(std::move(*b));
        }
        return out;
    }
    bool has(std::string_view name) const { return j_.contains(name); }
    // A nested object (`pending`) read with the same checks; nullopt when absent or null.
    std::optional<Line> object(std::string_view name) const {
        const auto it = j_.find(name);
        if (it == j_.end() || it->is_null()) return std::nullopt;
        if (!it->is_object()) fail(fmt::format("\"{}\" is not an object", name));
        return Line(file_, number_, *it);
    }

private:
    const std::string& file_;
    std::size_t number_;
    Json j_;
};

struct Counts {
    std::size_t users = 0, aliases = 0, audit = 0, meta = 0;
    // Targets restored as they were although no host name (stored_target()): the first few,
    // said after the summary, and how many.
    std::vector<std::string> unreachable_targets;
    std::size_t unreachable_target_count = 0;
};

std::string key_or_fail(const Config& c, const Line& l, const std::string& address) {
    auto r = admin_user_key(c, address);
    if (auto* e = std::get_if<KeyError>(&r)) l.fail(e->reason);
    return std::get<std::string>(r);
}

void restore_user(const Config& c, const Line& l, MapTxn& t, Counts& counts) {
    l.only({"user", "state", "target", "batch", "changed", "owner", "override", "dn", "entryUUID", "pending",
            "hidden_aliases"});
    const std::string key = key_or_fail(c, l, l.text("user", true));
    UserRecord r;
    r.state = *l.state("state", true);
    if (auto target = l.text("target"); !target.empty()) {
        // A backup restores what the map held: a target written before targets had to be host
        // names is kept, and said, rather than the whole dump refused.
        auto checked = stored_target(c, target);
        if (auto* e = std::get_if<KeyError>(&checked)) l.fail(e->reason);
        r.target = std::get<std::string>(checked);
        if (const auto why = target_host_problem(r.target)) {
            if (counts.unreachable_targets.size() < 10)
                counts.unreachable_targets.push_back(fmt::format("{} -> {}: {}", key, r.target, *why));
            ++counts.unreachable_target_count;
        }
    }
    try {
        r.batch = checked_batch(l.text("batch"));
    } catch (const DataError& e) {
        l.fail(e.what());
    }
    r.changed = l.integer("changed");
    const std::string owner = l.has("owner") ? l.text("owner") : "admin";
    if (owner != "admin" && owner != "directory") l.fail("\"owner\": expected admin or directory");
    r.owner = owner == "directory" ? Owner::directory : Owner::admin;
    r.override_state = l.state("override");
    r.dn = l.text("dn");
    r.entry_uuid = l.text("entryUUID");
    if (const auto pending = l.object("pending")) {
        pending->only({"state", "at"});
        r.pending_state = pending->state("state", true);
        r.pending_at = pending->integer("at", true);
    }
    std::vector<std::string> hidden;
    for (const auto& a : l.texts("hidden_aliases")) {
        hidden.push_back(key_or_fail(c, l, a));
        if (hidden.back() == key) l.fail(fmt::format("{} lists itself as a hidden alias", key));
    }
    if (r.owner == Owner::admin && (r.override_state || !r.dn.empty() || !r.entry_uuid.empty() || !hidden.empty()))
        l.fail("override, dn, entryUUID and hidden_aliases belong to users owned by the directory");
    if (t.user(key)) l.fail(fmt::format("{} is given twice", key));
    if (t.alias_primary(key)) l.fail(fmt::format("{} is an alias already", key));
    t.restore_user(key, r);
    for (const auto& a : hidden) t.put_hidden_alias(a, key);
}

void restore_alias(const Config& c, const Line& l, MapTxn& t) {
    l.only({"alias", "primary"});
    const std::string alias = key_or_fail(c, l, l.text("alias", true));
    const std::string primary = key_or_fail(c, l, l.text("primary", true));
    if (alias == primary) l.fail(alias + " cannot be an alias of itself");
    if (!t.user(primary)) l.fail(fmt::format("{}: its user {} is not on an earlier line", alias, primary));
    if (t.user(alias)) l.fail(fmt::format("{} is a user, not an alias", alias));
    if (t.alias_primary(alias)) l.fail(fmt::format("{} is given twice", alias));
    t.restore_alias(alias, primary);
}

void restore_audit(const Line& l, MapTxn& t) {
    l.only({"audit", "sequence", "time", "by", "command", "old", "new", "batch"});
    AuditEntry e;
    // The addresses of the trail stay as they were written: history is what happened, also
    // to users of a domain no longer managed here.
    e.address = l.text("audit", true);
    if (e.address.empty() || e.address.find('\0') != std::string::npos) l.fail("\"audit\": not an address");
    const std::int64_t sequence = l.integer("sequence", true);
    if (sequence < 1) l.fail("\"sequence\" must be 1 or more");
    e.sequence = static_cast<std::uint64_t>(sequence);
    e.time = l.integer("time", true);
    e.who = l.text("by");
    e.command = l.text("command");
    e.old_value = l.text("old");
    e.new_value = l.text("new");
    e.batch = l.text("batch");
    if (!t.restore_audit(e)) l.fail(fmt::format("audit entry {} of {} is given twice", e.sequence, e.address));
}

void restore_meta(const Line& l, MapTxn& t) {
    l.only({"meta", "value"});
    const std::string key = l.text("meta", true);
    // Meta keys are coexist's own names (lowercase letters, digits, '_', '.', ':', '-'); one a
    // newer version adds is restored, a key of any other bytes is no dump's.
    const bool named = key.size() <= 128 && std::all_of(key.begin(), key.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == ':' || ch == '-';
    });
    if (key.empty() || !named || derived_meta_key(key) || key == meta::kDirectoryFollowing)
        l.fail(fmt::format("meta \"{}\" is not one a dump carries", printable(key, 128)));
    if (t.meta(key)) l.fail(fmt::format("meta \"{}\" is given twice", key));
    t.put_meta(key, l.text("value", true));
}

// Checks the header line; returns the counts it announces.
Counts check_header(const Line& l) {
    l.only({"coexist_dump", "schema", "version", "created", "host", "users", "aliases", "audit", "meta"});
    const auto format = l.integer("coexist_dump", true);
    if (format > dump_format::kFormatVersion)
        l.fail(fmt::format("dump format {} is newer than this coexist-map reads ({})", format,
                           dump_format::kFormatVersion));
    const auto schema = l.integer("schema", true);
    const int ours = std::stoi(std::string(written_schema_version()));
    if (schema > ours)
        l.fail(fmt::format("the dump is of map schema {}, newer than this coexist-map ({}, schema {}) writes: restore "
                           "it with coexist-map {} or later",
                           schema, COEXIST_VERSION, ours, l.has("version") ? l.text("version") : "?"));
    if (schema < 1) l.fail("\"schema\" must be 1 or more");
    Counts announced;
    announced.users = static_cast<std::size_t>(l.integer("users", true));
    announced.aliases = static_cast<std::size_t>(l.integer("aliases", true));
    announced.audit = static_cast<std::size_t>(l.integer("audit", true));
    announced.meta = static_cast<std::size_t>(l.integer("meta", true));
    return announced;
}

// Reads the header line of `text` alone: DataError when the file is no dump this build can
// restore.
void check_first_line(const std::string& file, std::string_view text) {
    std::size_t number = 0;
    for (std::size_t pos = 0; pos < text.size();) {
        auto end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view raw = text.substr(pos, std::min(end - pos, dump_format::kMaxLineBytes + 1));
        pos = end + 1;
        ++number;
        if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
        if (raw.find_first_not_of(" \t") == std::string_view::npos) continue;
        const auto j = Json::parse(raw, nullptr, false);
        const Line l(file, number, j);
        if (j.is_discarded() || !j.is_object() || !j.contains("coexist_dump"))
            l.fail("not a coexist-map dump (the first line has no \"coexist_dump\")");
        check_header(l);
        return;
    }
    throw DataError(file + ": empty, not a coexist-map dump");
}

// Restores every line of `text` into `t` (cleared first). Throws DataError "FILE:LINE: reason".
Counts restore_all(const Config& c, const std::string& file, std::string_view text, MapTxn& t) {
    Counts announced, found;
    bool header = false;
    std::size_t number = 0;
    for (std::size_t pos = 0; pos < text.size();) {
        auto end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view raw = text.substr(pos, end - pos);
        pos = end + 1;
        ++number;
        if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
        if (raw.find_first_not_of(" \t") == std::string_view::npos) continue;
        if (raw.size() > dump_format::kMaxLineBytes)
            throw DataError(fmt::format("{}:{}: longer than {} bytes", file, number, dump_format::kMaxLineBytes));
        Json j;
        try {
            j = Json::parse(raw);
        } catch (const Json::parse_error& e) {
            throw DataError(fmt::format("{}:{}: not JSON ({})", file, number, e.what()));
        }
        const Line l(file, number, j);
        if (!j.is_object()) l.fail("not a JSON object");
        if (!header) {
            if (!j.contains("coexist_dump")) l.fail("not a coexist-map dump (the first line has no \"coexist_dump\")");
            announced = check_header(l);
            header = true;
            continue;
        }
        if (j.contains("user")) restore_user(c, l, t, found), ++found.users;
        else if (j.contains("alias")) restore_alias(c, l, t), ++found.aliases;
        else if (j.contains("audit")) restore_audit(l, t), ++found.audit;
        else if (j.contains("meta")) restore_meta(l, t), ++found.meta;
        else if (j.contains("coexist_dump")) l.fail("a second header (two dumps joined?)");
        else l.fail("neither a user, an alias, an audit entry nor meta");
    }
    if (!header) throw DataError(file + ": empty, not a coexist-map dump");
    const auto check = [&](std::string_view what, std::size_t a, std::size_t f) {
        if (a != f)
            throw DataError(fmt::format("{}: the header announces {} {}, the file holds {} (a truncated dump?)", file,
                                        a, what, f));
    };
    check("users", announced.users, found.users);
    check("aliases", announced.aliases, found.aliases);
    check("audit entries", announced.audit, found.audit);
    check("meta lines", announced.meta, found.meta);
    return found;
}

}  // namespace

int restore(const Config& c, const std::string& file, bool replace, std::ostream& out) {
    const std::string text = read_input(file);
    const std::string name = file == "-" ? std::string("(stdin)") : file;
    // Not a dump, or one of a newer schema: refused before the map is opened (or created).
    check_first_line(name, text);
    // Like init: a restore onto a new host makes the map (its directory in the daemons' group).
    MapStore store(c.map_path, c.map_size, MapStore::Mode::create, daemon_group(c));
    Counts restored;
    std::size_t replaced_users = 0;
    store.write(ChangeContext{current_user_name(), "restore " + name, static_cast<std::int64_t>(std::time(nullptr))},
                [&](MapTxn& t) {
                    replaced_users = t.user_count();
                    const std::size_t aliases = t.alias_count(), audit = t.audit_count();
                    if (!replace && (replaced_users || aliases || audit))
                        throw DataError(fmt::format("the map {} is not empty ({} users, {} aliases, {} audit entries): "
                                                    "restore --replace replaces it",
                                                    c.map_path, replaced_users, aliases, audit));
                    t.clear();
                    restored = restore_all(c, name, text, t);
                });
    open_log("coexist-map", false);
    log_info("restore: map {} {} from {}: {} users, {} aliases, {} audit entries", c.map_path,
             replaced_users ? fmt::format("replaced ({} users before)", replaced_users) : std::string("restored"), name,
             restored.users, restored.aliases, restored.audit);
    out << fmt::format("restored {} users, {} aliases, {} audit entries and {} meta lines from {} into {}\n",
                       restored.users, restored.aliases, restored.audit, restored.meta, name, c.map_path);
    for (const auto& t : restored.unreachable_targets)
        out << fmt::format("warning: target restored as it was, no host name mail can be sent to: {}\n", t);
    if (restored.unreachable_target_count > restored.unreachable_targets.size())
        out << fmt::format("warning: {} such targets in all\n", restored.unreachable_target_count);
    if (restored.unreachable_target_count)
        out << "warning: give each user a target that is reachable (coexist-map set ADDRESS STATE --target ...)\n";
    return kOk;
}

}  // namespace coexist::tool
