// `coexist-map import`: read the whole file, decode it to UTF-8 (whatever a spreadsheet saved),
// validate every row against the config and the map, and write nothing unless every row passes.
// Errors name FILE:LINE.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <map>
#include <ostream>
#include <set>
#include <unordered_map>
#include <variant>

#include "coexist/csv.hpp"
#include "coexist/map_store.hpp"
#include "coexist/text_decode.hpp"
#include "coexist/user_key.hpp"
#include "commands.hpp"

namespace coexist::tool {

namespace {

constexpr std::size_t kMaxImportFileBytes = std::size_t{2} << 30;  // 2 GiB, ~20M users

struct ImportRow {
    std::size_t line = 0;
    std::string key;
    UserRecord record;
    std::vector<std::string> aliases;
};

struct Columns {
    int address = -1, state = -1, target = -1, batch = -1, aliases = -1;
    std::size_t count = 0;  // named columns; a spreadsheet's empty trailing header cells are not
};

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

std::string lowercase(std::string_view v) {
    std::string out(v);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
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

Columns parse_header(const std::string& file, const CsvRecord& header) {
    Columns cols;
    std::size_t named = header.fields.size();
    while (named > 0 && header.fields[named - 1].empty()) --named;  // ",,," after the last name
    cols.count = named;
    const std::map<std::string, int Columns::*> known = {
        {"address", &Columns::address}, {"state", &Columns::state}, {"target", &Columns::target},
        {"batch", &Columns::batch}, {"aliases", &Columns::aliases}};
    for (std::size_t i = 0; i < named; ++i) {
        const std::string name = lowercase(header.fields[i]);  // "Address" as spreadsheets title it
        if (name.empty())
            throw DataError(fmt::format("{}:{}: column {} has no name", file, header.line, i + 1));
        const auto it = known.find(name);
        if (it == known.end())
            throw DataError(fmt::format("{}:{}: unknown column '{}' (expected address, state, target, batch, aliases)",
                                        file, header.line, name));
        if (cols.*(it->second) != -1)
            throw DataError(fmt::format("{}:{}: column '{}' given twice", file, header.line, name));
        cols.*(it->second) = static_cast<int>(i);
    }
    if (cols.address == -1) throw DataError(fmt::format("{}:{}: no 'address' column", file, header.line));
    return cols;
}

std::vector<std::string> split_aliases(std::string_view v) {
    std::vector<std::string> out;
    while (!v.empty()) {
        const auto semi = v.find(';');
        std::string_view item = v.substr(0, semi);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (!item.empty()) out.emplace_back(item);
        if (semi == std::string_view::npos) break;
        v.remove_prefix(semi + 1);
    }
    return out;
}

// Parses and checks everything that does not need the map: syntax, domains, states,
// duplicates inside the file, an alias that is also a user in the file.
std::vector<ImportRow> parse_rows(const Config& c, const std::string& file, std::string_view text,
                                  const std::optional<std::string>& default_batch, bool& has_aliases) {
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
    const Columns cols = parse_header(file, rec);
    has_aliases = cols.aliases != -1;

    std::vector<ImportRow> rows;
    std::unordered_map<std::string, std::size_t> user_line, alias_line;
    auto field = [&](int col) -> const std::string& {
        static const std::string empty;
        return col < 0 ? empty : rec.fields[static_cast<std::size_t>(col)];
    };
    while (next_record()) {
        auto fail = [&](const std::string& why) { return DataError(fmt::format("{}:{}: {}", file, rec.line, why)); };
        if (rec.fields.size() < cols.count)
            throw fail(fmt::format("{} fields, the header has {}", rec.fields.size(), cols.count));
        // Cells beyond the named columns are a spreadsheet's padding: they must be empty.
        for (std::size_t i = cols.count; i < rec.fields.size(); ++i)
            if (!rec.fields[i].empty())
                throw fail(fmt::format("{} fields, the header has {}: '{}' in a column with no name",
                                       rec.fields.size(), cols.count, rec.fields[i]));
        ImportRow row;
        row.line = rec.line;
        try {
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
            row.record.batch = checked_batch(!field(cols.batch).empty() ? field(cols.batch)
                                                                          : default_batch.value_or(""));
            for (const auto& a : split_aliases(field(cols.aliases))) row.aliases.push_back(user_key_or_throw(c, a));
        } catch (const DataError& e) {
            throw fail(e.what());
        }
        if (auto [it, fresh] = user_line.emplace(row.key, row.line); !fresh)
            throw fail(fmt::format("{} is listed twice (first on line {})", row.key, it->second));
        for (const auto& a : row.aliases) {
            if (auto [it, fresh] = alias_line.emplace(a, row.line); !fresh)
                throw fail(fmt::format("alias {} is listed twice (first on line {})", a, it->second));
        }
        rows.push_back(std::move(row));
    }
    if (reader.error()) throw DataError(fmt::format("{}:{}: {}", file, reader.error_line(), *reader.error()));
    for (const auto& row : rows)
        for (const auto& a : row.aliases)
            if (auto it = user_line.find(a); it != user_line.end())
                throw DataError(fmt::format("{}:{}: alias {} is also a user (line {})", file, row.line, a, it->second));
    // Key order: LMDB writes fastest in order, and dry-run output reads best sorted.
    std::sort(rows.begin(), rows.end(), [](const ImportRow& a, const ImportRow& b) { return a.key < b.key; });
    return rows;
}

struct ImportCounts {
    std::size_t added = 0, changed = 0, unchanged = 0;
};

// Checks the rows against the map and, unless `out` is given (dry run), writes them.
ImportCounts plan_and_apply(MapTxn& t, const std::string& file, const std::vector<ImportRow>& rows,
                            bool has_aliases, std::ostream* dry_run_out) {
    std::unordered_map<std::string_view, const ImportRow*> in_file;
    in_file.reserve(rows.size());
    for (const auto& r : rows) in_file.emplace(r.key, &r);

    ImportCounts counts;
    for (const auto& row : rows) {
        if (auto p = t.alias_primary(row.key); p && !(has_aliases && in_file.count(*p)))
            throw DataError(fmt::format("{}:{}: {} is an alias of {} in the map", file, row.line, row.key, *p));
        for (const auto& a : row.aliases) {
            if (t.user(a) && !in_file.count(a))
                throw DataError(fmt::format("{}:{}: alias {} is a user in the map", file, row.line, a));
            if (auto p = t.alias_primary(a); p && *p != row.key && !in_file.count(*p))
                throw DataError(fmt::format("{}:{}: alias {} belongs to {} in the map", file, row.line, a, *p));
        }
        const auto old = t.user(row.key);
        if (old && old->owner == Owner::directory)
            throw DataError(fmt::format("{}:{}: {} is owned by the directory ({}): change it there, or override "
                                        "its state with 'coexist-map set'", file, row.line, row.key, old->dn));
        const bool same_record = old && old->state == row.record.state && old->target == row.record.target &&
                                 old->batch == row.record.batch;
        // With an aliases column the row's list replaces the user's: a removed alias sends its
        // mail elsewhere, so it is a change to count and to show, never "unchanged".
        std::vector<std::string> old_aliases = old ? t.aliases_of(row.key) : std::vector<std::string>{};
        std::vector<std::string> new_aliases = row.aliases;
        std::sort(old_aliases.begin(), old_aliases.end());
        std::sort(new_aliases.begin(), new_aliases.end());
        const bool same_aliases = !has_aliases || old_aliases == new_aliases;
        if (!old) ++counts.added;
        else if (same_record && same_aliases) ++counts.unchanged;
        else ++counts.changed;
        if (dry_run_out && !same_record)
            *dry_run_out << fmt::format("{} {}: {} -> {}{}\n", old ? "change" : "add", row.key,
                                        old ? std::string(to_string(old->state)) : "(none)",
                                        to_string(row.record.state),
                                        row.record.target.empty() ? "" : " target=" + row.record.target);
        if (dry_run_out && !same_aliases)
            *dry_run_out << fmt::format("{} {}: aliases {} -> {}\n", old ? "change" : "add", row.key,
                                        old_aliases.empty() ? "(none)" : fmt::format("{}", fmt::join(old_aliases, ";")),
                                        new_aliases.empty() ? "(none)" : fmt::format("{}", fmt::join(new_aliases, ";")));
    }
    if (dry_run_out) return counts;

    // Aliases first leave their old owners, so an alias can move between two users of the file.
    if (has_aliases)
        for (const auto& row : rows)
            for (const auto& a : t.aliases_of(row.key))
                if (std::find(row.aliases.begin(), row.aliases.end(), a) == row.aliases.end()) t.remove_alias(a);
    for (const auto& row : rows) t.put_user(row.key, row.record);
    if (has_aliases)
        for (const auto& row : rows)
            for (const auto& a : row.aliases) t.put_alias(a, row.key);
    return counts;
}

}  // namespace

int import_csv(const Config& c, const std::string& file, const std::optional<std::string>& batch, bool dry_run,
               std::ostream& out) {
    const std::string text = decode_file(file, read_file(file));
    bool has_aliases = false;
    const auto rows = parse_rows(c, file, text, batch, has_aliases);

    MapStore store(c.map_path, c.map_size, dry_run ? MapStore::Mode::read_only : MapStore::Mode::read_write);
    ImportCounts counts;
    if (dry_run) {
        store.read([&](MapTxn& t) { counts = plan_and_apply(t, file, rows, has_aliases, &out); });
    } else {
        const ChangeContext ctx{current_user_name(), "import " + file, static_cast<std::int64_t>(std::time(nullptr))};
        store.write(ctx, [&](MapTxn& t) { counts = plan_and_apply(t, file, rows, has_aliases, nullptr); });
    }
    out << fmt::format("{} {} rows from {}: {} added, {} changed, {} unchanged\n",
                       dry_run ? "would import" : "imported", rows.size(), file, counts.added, counts.changed,
                       counts.unchanged);
    return kOk;
}

}  // namespace coexist::tool
