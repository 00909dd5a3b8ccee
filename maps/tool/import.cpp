// `coexist-map import` (design 10 and 13.4), the pipeline: decode the file to UTF-8 (whatever a
// spreadsheet saved) -> CSV rows -> header mapping (import_columns) -> row validation, every bad
// row reported (import_errors) -> the map compared and written in one write transaction
// (import_plan). Nothing is written unless every row passes.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fmt/format.h>
#include <iostream>
#include <ostream>
#include <unordered_map>
#include <variant>

#include "coexist/csv.hpp"
#include "coexist/map_store.hpp"
#include "coexist/text_decode.hpp"
#include "coexist/utc_time.hpp"
#include "coexist/user_key.hpp"
#include "commands.hpp"
#include "import_columns.hpp"
#include "import_errors.hpp"
#include "import_plan.hpp"

namespace coexist::tool {

namespace {

constexpr std::size_t kMaxImportFileBytes = std::size_t{2} << 30;  // 2 GiB, ~20M users

// Spreadsheets pad cells with spaces; every cell is trimmed alike, quoted or not.
std::string_view trim(std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return v;
}

void trim_fields(CsvRecord& rec) {
    for (auto& f : rec.fields) {
        const std::string_view t = trim(f);
        if (t.size() != f.size()) f = std::string(t);
    }
}

bool all_empty(const CsvRecord& rec) {
    return std::all_of(rec.fields.begin(), rec.fields.end(), [](const std::string& f) { return f.empty(); });
}

// The file's text as UTF-8, or a DataError naming the file, the line and the encoding it found.
std::string decode_file(const std::string& file, const std::string& bytes) {
    auto decoded = decode_text(bytes);
    if (auto* e = std::get_if<DecodeError>(&decoded)) {
        if (e->line == 0) throw DataError(fmt::format("{}: {}", file, e->reason));
        throw DataError(fmt::format("{}:{}: {} at byte {} of the file", file, e->line, e->reason, e->offset));
    }
    return std::move(std::get<DecodedText>(decoded).utf8);
}

// Excel's "Unicode Text" is tab-separated, and Excel in locales whose decimal mark is a comma
// saves "CSV" with semicolons: a header line with tabs (or semicolons) and no comma says so.
// (The aliases cell's own ';' separators are then inside quotes, as Excel writes them.)
char detect_delimiter(std::string_view text) {
    const std::string_view header = text.substr(0, text.find('\n'));
    if (header.find(',') != std::string_view::npos) return ',';
    if (header.find('\t') != std::string_view::npos) return '\t';
    if (header.find(';') != std::string_view::npos) return ';';
    return ',';
}

std::string read_file(const std::string& path) {
    std::FILE* f = path == "-" ? stdin : std::fopen(path.c_str(), "re");
    if (!f) throw DataError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
    std::string text;
    char buf[1 << 16];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        text.append(buf, n);
        if (text.size() > kMaxImportFileBytes) {
            if (f != stdin) std::fclose(f);
            throw DataError(path + ": larger than 2 GiB");
        }
    }
    const bool failed = std::ferror(f);
    if (f != stdin) std::fclose(f);
    if (failed) throw DataError(path + ": read error");
    return text;
}


// The aliases cell: addresses separated by ';' (what export writes), ',' or white space (GAM's
// list delimiter); a separator inside a quoted local part ("a b"@contoso.com) is part of it.
std::vector<std::string> split_aliases(std::string_view v) {
    std::vector<std::string> out;
    std::string item;
    bool quoted = false;
    auto flush = [&] {
        if (!item.empty()) out.push_back(std::move(item));
        item.clear();
    };
    for (std::size_t i = 0; i < v.size(); ++i) {
        const char c = v[i];
        if (c == '"') quoted = !quoted;
        if (quoted && c == '\\' && i + 1 < v.size()) {
            item.push_back(c);
            item.push_back(v[++i]);
            continue;
        }
        if (!quoted && (c == ';' || c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) flush();
        else item.push_back(c);
    }
    flush();
    return out;
}

// Checks one row by itself (syntax, domain, state, target, batch, aliases); DataError says why.
ImportRow check_row(const Config& c, const ImportColumns& cols, const CsvRecord& rec,
                    const std::optional<std::string>& default_batch, State default_state) {
    auto field = [&](int col) -> const std::string& {
        static const std::string empty;
        return col < 0 ? empty : rec.fields[static_cast<std::size_t>(col)];
    };
    if (rec.fields.size() < cols.count)
        throw DataError(fmt::format("{} fields, the header has {}", rec.fields.size(), cols.count));
    // Cells beyond the named columns are a spreadsheet's padding: they must be empty.
    for (std::size_t i = cols.count; i < rec.fields.size(); ++i)
        if (!rec.fields[i].empty())
            throw DataError(fmt::format("{} fields, the header has {}: '{}' in a column with no name",
                                        rec.fields.size(), cols.count, rec.fields[i]));
    ImportRow row;
    row.line = rec.line;
    row.record.state = default_state;
    row.key = user_key_or_throw(c, field(cols.address));
    const std::string& state = field(cols.state);
    if (!state.empty()) {
        const auto st = parse_state(state);
        if (!st) throw DataError("unknown state '" + state + "' (expected source, migrated or dual)");
        row.record.state = *st;
    }
    if (!field(cols.target).empty()) {
        auto t = admin_target(c, field(cols.target));
        if (auto* e = std::get_if<KeyError>(&t)) throw DataError(e->reason);
        row.record.target = std::get<std::string>(t);
    }
    row.record.batch = checked_batch(!field(cols.batch).empty() ? field(cols.batch) : default_batch.value_or(""));
    for (const auto& a : split_aliases(field(cols.aliases))) row.aliases.push_back(user_key_or_throw(c, a));
    const std::string& pending_state = field(cols.pending_state);
    const std::string& pending_at = field(cols.pending_at);
    if (pending_state.empty() != pending_at.empty())
        throw DataError("pending_state and pending_at go together: both empty, or a state and its time");
    if (!pending_state.empty()) {
        const auto st = parse_state(pending_state);
        if (!st) throw DataError("unknown pending_state '" + pending_state + "' (expected source, migrated or dual)");
        const auto at = parse_iso8601(pending_at);
        if (!at) throw DataError("pending_at '" + pending_at + "' is not an ISO 8601 time with Z or an offset");
        // A past time would take effect the moment the file is imported (an old export read
        // back a day later): refused, as set --at refuses it.
        if (*at <= static_cast<std::int64_t>(std::time(nullptr)))
            throw DataError(fmt::format("pending_at {} is in the past: put the state in the state column, or "
                                        "clear both pending cells", utc_timestamp(*at)));
        row.record.pending_state = *st;
        row.record.pending_at = *at;
    }
    return row;
}

// Stages CSV rows, header mapping and row validation: the good rows, and one reason per bad row
// in `errors` (syntax, domains, states, duplicates inside the file, an alias that is also a
// user in the file). Only a missing or unusable header stops it at once.
ImportFile parse_rows(const Config& c, const std::string& file, std::string_view text,
                      const std::optional<std::string>& default_batch, State default_state, ImportErrors& errors,
                      std::ostream& err) {
    CsvReader reader(text, detect_delimiter(text));
    CsvRecord rec;
    // Rows that are wholly empty (",,,," as spreadsheets write them) are skipped everywhere.
    auto next_record = [&] {
        while (reader.next(rec)) {
            trim_fields(rec);
            if (!all_empty(rec)) return true;
        }
        return false;
    };
    if (!next_record()) {
        if (reader.error()) throw DataError(fmt::format("{}:{}: {}", file, reader.error_line(), *reader.error()));
        throw DataError(file + ": empty file (expected a header row)");
    }
    const ImportColumns cols = map_import_header(file, rec);
    if (const auto warning = ignored_columns_warning(file, rec.line, cols); !warning.empty())
        err << "coexist-map: " << warning << '\n';

    ImportFile out;
    out.name = file;
    out.has_aliases = cols.aliases != -1;
    out.keeps_target = cols.target == -1;
    out.has_pending = cols.pending_state != -1;
    out.keeps_batch = cols.batch == -1 && !default_batch;
    std::unordered_map<std::string, std::size_t> user_line, alias_line;
    while (next_record()) {
        ImportRow row;
        try {
            row = check_row(c, cols, rec, default_batch, default_state);
        } catch (const DataError& e) {
            // The address alone may still be good: the other checks must know the user is here.
            if (rec.fields.size() > static_cast<std::size_t>(cols.address))
                if (auto k = admin_user_key(c, rec.fields[static_cast<std::size_t>(cols.address)]);
                    std::holds_alternative<std::string>(k))
                    out.bad_row_keys.push_back(std::get<std::string>(k));
            errors.add(rec.line, e.what());
            continue;
        }
        if (auto [it, fresh] = user_line.emplace(row.key, row.line); !fresh) {
            errors.add(row.line, fmt::format("{} is listed twice (first on line {})", row.key, it->second));
            continue;
        }
        bool twice = false;
        for (const auto& a : row.aliases)
            if (auto [it, fresh] = alias_line.emplace(a, row.line); !fresh && !twice) {
                errors.add(row.line, fmt::format("alias {} is listed twice (first on line {})", a, it->second));
                twice = true;
            }
        if (!twice) out.rows.push_back(std::move(row));
    }
    // A CSV syntax error ends the reading: what follows cannot be split into cells reliably.
    if (reader.error()) errors.add(reader.error_line(), *reader.error());
    std::erase_if(out.rows, [&](const ImportRow& row) {
        for (const auto& a : row.aliases)
            if (auto it = user_line.find(a); it != user_line.end()) {
                errors.add(row.line, fmt::format("alias {} is also a user (line {})", a, it->second));
                return true;
            }
        return false;
    });
    // Key order: LMDB writes fastest in order, and the diff reads best sorted.
    std::sort(out.rows.begin(), out.rows.end(), [](const ImportRow& a, const ImportRow& b) { return a.key < b.key; });
    return out;
}

std::string summary(const ImportCounts& n) {
    return fmt::format("{} added, {} changed, {} unchanged, {} removed; aliases +{} -{}", n.added, n.changed,
                       n.unchanged, n.removed, n.aliases_added, n.aliases_removed);
}

}  // namespace

int import_csv(const Config& c, const std::string& file, const ImportOptions& options, std::ostream& out,
               std::ostream& err) {
    State default_state = State::migrated;
    if (options.state) {
        const auto st = parse_state(*options.state);
        if (!st) throw UsageError(fmt::format("--state '{}': expected source, migrated or dual", *options.state));
        default_state = *st;
    }
    if (options.batch) checked_batch(*options.batch);
    const std::string text = decode_file(file, read_file(file));
    ImportErrors errors(file);
    const ImportFile parsed = parse_rows(c, file, text, options.batch, default_state, errors, err);
    const PruneScope prune{options.prune, options.prune ? options.batch : std::nullopt, options.force};
    if (prune.enabled && parsed.rows.empty() && errors.empty())
        throw DataError(fmt::format("{}: no rows: --prune would remove every user{}; 'coexist-map remove' removes "
                                    "users one by one", file, prune.batch ? " of batch " + *prune.batch : ""));

    const bool write = !options.dry_run && errors.empty();
    MapStore store(c.map_path, c.map_size, options.dry_run ? MapStore::Mode::read_only : MapStore::Mode::read_write);
    ImportPlan plan;
    // The map-side checks run even when rows are already bad, so one run names every bad row.
    if (!write) {
        store.read([&](MapTxn& t) { plan = plan_import(t, parsed, prune, errors, true); });
    } else {
        const ChangeContext ctx{current_user_name(), fmt::format("import {}{}", file, prune.enabled ? " --prune" : ""),
                                static_cast<std::int64_t>(std::time(nullptr))};
        store.write(ctx, [&](MapTxn& t) {
            // Run again from the start when the map had to grow: nothing of a first try remains.
            ImportErrors map_errors(file);
            plan = plan_import(t, parsed, prune, map_errors, false);
            if (!map_errors.empty()) throw DataError(map_errors.report());  // aborts: nothing written
            apply_import(t, parsed, plan);
        });
    }
    if (!errors.empty()) throw DataError(errors.report());

    for (const auto& change : plan.changes)
        if (options.dry_run || change.removal) out << change.text << '\n';
    out << fmt::format("{} {} rows from {}: {}\n", options.dry_run ? "would import" : "imported", parsed.rows.size(),
                       file, summary(plan.counts));
    return kOk;
}

int import_csv(const Config& c, const std::string& file, const std::optional<std::string>& batch, bool dry_run,
               std::ostream& out) {
    return import_csv(c, file, ImportOptions{batch, dry_run, false, std::nullopt, false}, out, std::cerr);
}

}  // namespace coexist::tool
