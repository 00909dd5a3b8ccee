// `coexist-map history [ADDRESS] [--batch NAME] [--since TIME] [--format text|csv]` (design
// 10): the audit trail, of one address or of the whole map, oldest change first.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <ostream>

#include "coexist/csv.hpp"
#include "coexist/utc_time.hpp"
#include "coexist/log_text.hpp"
#include "coexist/map_store.hpp"
#include "commands.hpp"

namespace coexist::tool {

namespace {

// The batch an entry counts for under --batch: the one recorded in it (the user's batch at the
// time of the change: a user moved from wave1 to wave2 keeps its wave1 history in wave1);
// else, for entries that record none (aliases, notes written by the directory sync), the
// current batch of the user the address belongs to, or of the user an alias entry names.
// An audit field as printed: it records what was typed (a command line, a file's name) and what a
// restored dump held, so control bytes in it are shown as '?', never sent to the terminal.
std::string shown(std::string_view field) { return loggable(field, 4096); }

class BatchOf {
public:
    explicit BatchOf(MapTxn& t) : t_(t) {}

    const std::string& operator()(const AuditEntry& e) {
        if (!e.batch.empty()) return e.batch;
        auto [it, fresh] = current_.try_emplace(e.address);
        if (fresh) it->second = current_batch(e);
        return it->second;
    }

private:
    std::string current_batch(const AuditEntry& e) {
        if (auto r = t_.user(e.address)) return r->batch;
        std::optional<std::string> primary = t_.alias_primary(e.address);
        // A removed alias: its entries say whose it was ("alias of ann@contoso.com").
        constexpr std::string_view kAliasOf = "alias of ";
        for (const auto* v : {&e.new_value, &e.old_value})
            if (!primary && v->starts_with(kAliasOf)) primary = v->substr(kAliasOf.size());
        if (!primary) return {};
        auto r = t_.user(*primary);
        return r ? r->batch : std::string();
    }

    MapTxn& t_;
    std::map<std::string, std::string, std::less<>> current_;
};

std::string or_none(const std::string& s) { return s.empty() ? "(none)" : s; }

}  // namespace

int history(const Config& c, const HistoryQuery& q, std::ostream& out) {
    std::optional<std::int64_t> since;
    if (q.since) {
        since = parse_iso8601(*q.since);
        if (!since)
            throw DataError(fmt::format("--since '{}' is not a time with its offset (YYYY-MM-DDTHH:MM[:SS]Z or +HH:MM)",
                                         loggable(*q.since)));
    }
    if (q.format != "text" && q.format != "csv")
        throw UsageError(fmt::format("--format '{}': expected text or csv", loggable(q.format)));
    std::optional<std::string> key;
    if (q.address) key = user_key_or_throw(c, *q.address);
    require_batch_name(q.batch);

    MapStore store(c.map_path, c.map_size, MapStore::Mode::read_only);
    std::vector<AuditEntry> entries;
    bool any = false;
    bool batch_seen = false;  // an entry of --batch, before --since: the batch is known
    store.read([&](MapTxn& t) {
        BatchOf batch_of(t);
        const auto keep = [&](const AuditEntry& e) {
            any = true;
            if (q.batch && batch_of(e) != *q.batch) return true;
            batch_seen = true;
            if (since && e.time < *since) return true;
            entries.push_back(e);
            return true;
        };
        if (key) {
            for (const auto& e : t.history(*key)) keep(e);
        } else {
            t.for_each_audit(keep);
        }
    });
    if (key && !any) throw DataError("no history for " + *key);
    // A misspelt batch would print nothing and succeed; list, batch set and scripts refuse it so.
    if (q.batch && !batch_seen)
        throw DataError(fmt::format("unknown batch '{}': no change of the map's history is in it", printable(*q.batch)));
    // The audit keys sort by address; the sequence is the order the changes were committed in.
    std::stable_sort(entries.begin(), entries.end(),
                     [](const AuditEntry& a, const AuditEntry& b) { return a.sequence < b.sequence; });

    if (q.format == "csv") {
        out << "time,address,old,new,batch,by,command\n";
        for (const auto& e : entries)
            out << format_time(e.time) << ',' << csv_field(shown(e.address)) << ',' << csv_field(shown(e.old_value))
                << ',' << csv_field(shown(e.new_value)) << ',' << csv_field(shown(e.batch)) << ','
                << csv_field(shown(e.who)) << ',' << csv_field(shown(e.command)) << '\n';
        return kOk;
    }
    for (const auto& e : entries) {
        out << fmt::format("{} {}: {} -> {}", format_time(e.time), shown(e.address), shown(or_none(e.old_value)),
                           shown(or_none(e.new_value)));
        if (!e.batch.empty()) out << ", batch=" << shown(e.batch);
        out << fmt::format(", by={} ({})\n", shown(e.who), shown(e.command));
    }
    return kOk;
}

}  // namespace coexist::tool
