// `coexist-map import` (design 10 and 13.4), the pipeline: decode the file to UTF-8 (whatever a
// spreadsheet saved) -> CSV rows -> header mapping (import_columns) -> row validation, every bad
// row reported (import_errors) -> the rows staged in the write transaction (import_stage) -> the
// map compared and written in that same transaction (import_plan). Nothing is written unless
// every row passes. The file streams through: memory holds a piece of it and one row, the rest
// is the transaction's own pages.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <iostream>
#include <optional>
#include <ostream>
#include <memory>
#include <variant>

#include "coexist/address.hpp"
#include "coexist/csv.hpp"
#include "coexist/log_text.hpp"
#include "coexist/map_store.hpp"
#include "coexist/text_decode.hpp"
#include "coexist/utc_time.hpp"
#include "coexist/user_key.hpp"
#include "commands.hpp"
#include "import_columns.hpp"
#include "import_errors.hpp"
#include "import_plan.hpp"
#include "import_stage.hpp"

namespace coexist::tool {

namespace {

constexpr std::size_t kMaxImportFileBytes = std::size_t{2} << 30;  // 2 GiB, ~20M users

// Spreadsheets pad cells with spaces; every cell is trimmed alike, quoted or not.
void trim_fields(CsvRecord& rec) {
    for (auto& f : rec.fields) {
        const std::string_view t = trim_blanks(f);
        if (t.size() != f.size()) f = std::string(t);
    }
}

bool all_empty(const CsvRecord& rec) {
    return std::all_of(rec.fields.begin(), rec.fields.end(), [](const std::string& f) { return f.empty(); });
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

// The file, read a piece at a time: a pipe (or standard input) is first copied to an unnamed
// temporary file, so that a transaction run again from the start (MapStore::write, when the
// map grows) reads it again from its first byte.
class ImportInput {
public:
    explicit ImportInput(const std::string& path) : path_(path), file_(nullptr, &std::fclose) {
        std::FILE* f = path == "-" ? stdin : std::fopen(path.c_str(), "re");
        if (!f) throw DataError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
        struct stat st{};
        if (f != stdin) file_.reset(f);
        const bool stated = ::fstat(::fileno(f), &st) == 0;
        // fopen() opens a directory for reading; fread() would then fail with "read error".
        if (stated && S_ISDIR(st.st_mode)) throw DataError(fmt::format("{}: is a directory, not a CSV file", path));
        if (stated && S_ISREG(st.st_mode) && f != stdin) return;
        std::unique_ptr<std::FILE, int (*)(std::FILE*)> copy(std::tmpfile(), &std::fclose);
        if (!copy) throw DataError(fmt::format("{}: a temporary copy: {}", path, std::strerror(errno)));
        char buf[1 << 16];
        std::size_t n, total = 0;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
            if ((total += n) > kMaxImportFileBytes) throw DataError(path + ": larger than 2 GiB");
            if (std::fwrite(buf, 1, n, copy.get()) != n)
                throw DataError(fmt::format("{}: a temporary copy: {}", path, std::strerror(errno)));
        }
        if (std::ferror(f)) throw DataError(fmt::format("{}: cannot read: {}", path, std::strerror(errno)));
        file_ = std::move(copy);
    }

    void rewind() {
        if (std::fseek(file_.get(), 0, SEEK_SET) != 0) throw DataError(path_ + ": cannot read it again");
        read_ = 0;
    }

    // The next piece of the file (up to 64 KiB) in `piece`; false at its end.
    bool next(std::string& piece) {
        piece.resize(std::size_t{1} << 16);
        const std::size_t n = std::fread(piece.data(), 1, piece.size(), file_.get());
        piece.resize(n);
        if (n == 0 && std::ferror(file_.get()))
            throw DataError(fmt::format("{}: cannot read: {}", path_, std::strerror(errno)));
        if ((read_ += n) > kMaxImportFileBytes) throw DataError(path_ + ": larger than 2 GiB");
        return n > 0;
    }

private:
    std::string path_;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_;
    std::size_t read_ = 0;
};

// The decode stage: the file's text as UTF-8 a piece at a time (CsvReader's Source), or a
// DataError naming the file, the line and the encoding it found.
class DecodingSource {
public:
    DecodingSource(ImportInput& input, std::string path) : input_(input), path_(std::move(path)) {}

    // Appends the next decoded piece to `out`; false once the file has ended.
    bool more(std::string& out) {
        if (done_) return false;
        const bool got = input_.next(piece_);
        if (const auto e = decoder_.feed(piece_, !got, out)) {
            if (e->line == 0) throw DataError(fmt::format("{}: {}", path_, e->reason));
            throw DataError(fmt::format("{}:{}: {} at byte {} of the file", path_, e->line, e->reason, e->offset));
        }
        done_ = !got;
        return got;
    }

private:
    ImportInput& input_;
    std::string path_;
    TextDecoder decoder_;
    std::string piece_;
    bool done_ = false;
};

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

constexpr std::size_t kEmptyStateLinesShown = 5;

// One line: "FILE: N rows with an empty state cell take migrated (lines 4, 9, ...)".
std::string empty_state_warning(const std::string& file, std::size_t count, const std::vector<std::size_t>& lines) {
    return fmt::format("{}: {} row{} with an empty state cell take{} migrated (line{} {}{}); "
                       "write the state, or give --state for the rows without one",
                       file, count, count == 1 ? "" : "s", count == 1 ? "s" : "", lines.size() == 1 ? "" : "s",
                       fmt::join(lines, ", "), count > lines.size() ? ", ..." : "");
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

// Stages CSV rows, header mapping and row validation: the good rows into `staged`, and one
// reason per bad row in `errors` (syntax, domains, states, duplicates inside the file). Only
// a missing or unusable header, or a file in no encoding we read, stops it at once. `err`
// gets the warning naming ignored columns (null: said already, in an earlier try).
// `state_option`: --state, the state of rows without one (migrated when not given).
ImportShape stage_file(const Config& c, const std::string& file, ImportInput& input,
                       const std::optional<std::string>& default_batch, std::optional<State> state_option,
                       StagedRows& staged, ImportErrors& errors, std::ostream* err) {
    const State default_state = state_option.value_or(State::migrated);
    input.rewind();
    DecodingSource source(input, file);
    // The header line tells the delimiter: read until it is whole (or the record limit).
    std::string first;
    while (first.find('\n') == std::string::npos && first.size() <= kMaxCsvRecordBytes && source.more(first)) {
    }
    const char delimiter = detect_delimiter(first);
    CsvReader reader(std::move(first), [&source](std::string& out) { return source.more(out); }, delimiter);
    CsvRecord rec;
    // Rows that are wholly empty (",,,," as spreadsheets write them) are skipped everywhere.
    // A row with a CSV error (rec.error) comes back: the caller names it.
    auto next_record = [&] {
        while (reader.next(rec)) {
            if (rec.error) return true;
            trim_fields(rec);
            if (!all_empty(rec)) return true;
        }
        return false;
    };
    if (!next_record()) {
        if (reader.error()) throw DataError(fmt::format("{}:{}: {}", file, reader.error_line(), *reader.error()));
        throw DataError(file + ": empty file (expected a header row)");
    }
    if (rec.error) throw DataError(fmt::format("{}:{}: {}", file, rec.line, *rec.error));
    const ImportColumns cols = map_import_header(file, rec);
    if (const auto warning = ignored_columns_warning(file, rec.line, cols); !warning.empty() && err)
        *err << "coexist-map: " << warning << '\n';

    ImportShape shape;
    shape.name = file;
    shape.has_aliases = cols.aliases != -1;
    shape.keeps_target = cols.target == -1;
    shape.has_pending = cols.pending_state != -1;
    shape.keeps_batch = cols.batch == -1 && !default_batch;
    while (next_record()) {
        if (rec.error) {  // its cells cannot be told apart: no address to check the others against
            errors.add(rec.line, *rec.error);
            continue;
        }
        ImportRow row;
        try {
            row = check_row(c, cols, rec, default_batch, default_state);
        } catch (const DataError& e) {
            // The address alone may still be good: the other checks must know the user is here.
            if (rec.fields.size() > static_cast<std::size_t>(cols.address))
                if (auto k = admin_user_key(c, rec.fields[static_cast<std::size_t>(cols.address)]);
                    std::holds_alternative<std::string>(k))
                    staged.note_bad_row(std::get<std::string>(k));
            errors.add(rec.line, e.what());
            continue;
        }
        if (const auto first_line = staged.add(row)) {
            errors.add(row.line, fmt::format("{} is listed twice (first on line {})", row.key, *first_line));
            continue;
        }
        bool twice = false;
        for (const auto& a : row.aliases)
            if (const auto first_line = staged.claim_alias(a, row.line, row.key); first_line && !twice) {
                errors.add(row.line, fmt::format("alias {} is listed twice (first on line {})", a, *first_line));
                twice = true;
            }
        if (twice) {
            staged.withdraw(row);
            continue;
        }
        // A row staged with an empty state cell in a file that has the column, without --state:
        // it takes migrated by default, as a cell blanked by mistake (a rolled-back user's) does.
        if (cols.state != -1 && !state_option && rec.fields[static_cast<std::size_t>(cols.state)].empty() &&
            ++shape.empty_states <= kEmptyStateLinesShown)
            shape.empty_state_lines.push_back(row.line);
    }
    // A quoted field not closed, or a record over the limit, ends the reading: what follows
    // cannot be split into cells reliably. (Other CSV errors end at their line break: named
    // above, and the rows after them are checked.)
    if (reader.error()) errors.reading_stopped(reader.error_line(), *reader.error());
    return shape;
}

// Ends the dry run's transaction: thrown out of MapStore::write, which then aborts it.
struct DryRunEnd {};

std::string summary(const ImportCounts& n) {
    return fmt::format("{} added, {} changed, {} unchanged, {} removed; aliases +{} -{}", n.added, n.changed,
                       n.unchanged, n.removed, n.aliases_added, n.aliases_removed);
}

}  // namespace

int import_csv(const Config& c, const std::string& file, const ImportOptions& options, std::ostream& out,
               std::ostream& err) {
    std::optional<State> state_option;
    if (options.state) {
        const auto st = parse_state(*options.state);
        if (!st) throw UsageError(fmt::format("--state '{}': expected source, migrated or dual", loggable(*options.state)));
        state_option = *st;
    }
    if (options.batch) checked_batch_argument(*options.batch);
    // --batch names the batch for the rows without one; empty, it would clear the batch of
    // every such user that has one, which is no batch name at all.
    if (options.batch && options.batch->empty()) throw UsageError("--batch '': an empty batch name");
    ImportInput input(file);
    const PruneScope prune{options.prune, options.prune ? options.batch : std::nullopt, options.force};

    // The dry run too reads the file into a write transaction (its scratch database holds the
    // staged rows), and then aborts it.
    MapStore store(c.map_path, c.map_size, MapStore::Mode::read_write);
    // The command as history shows it: the options that decide what the import did.
    std::string command = fmt::format("import {}", file);
    if (options.batch) command += fmt::format(" --batch {}", *options.batch);
    if (options.state) command += fmt::format(" --state {}", *options.state);
    if (prune.enabled) command += prune.force ? " --prune --force" : " --prune";
    const ChangeContext ctx{current_user_name(), std::move(command), static_cast<std::int64_t>(std::time(nullptr))};
    ImportDiff diff(options.dry_run);
    ImportCounts counts;
    std::size_t rows = 0;
    ImportShape taken;  // of the try that committed (or would): its empty state cells
    bool warned = false;
    std::optional<std::string> refused_prune;  // --dry-run: the prune the real run would refuse
    try {
        store.write(ctx, [&](MapTxn& t) {
            // Run again from the start when the map had to grow: nothing of a first try remains.
            diff.clear();
            counts = {};
            refused_prune.reset();
            ImportErrors errors(file);
            StagedRows staged(t);
            const ImportShape shape =
                stage_file(c, file, input, options.batch, state_option, staged, errors, warned ? nullptr : &err);
            warned = true;
            if (prune.enabled && staged.rows() == 0 && errors.empty())
                throw DataError(fmt::format("{}: no rows: --prune would remove every user{}; 'coexist-map remove' "
                                            "removes users one by one", file,
                                            prune.batch ? " of batch " + *prune.batch : ""));
            // Decided before anything is written, from the whole file: it is all staged.
            if (const auto refusal = prune_refusal(t, staged, prune); refusal && errors.empty()) {
                if (!options.dry_run) throw DataError(file + ": " + *refusal);
                diff.note("refused without --force: " + *refusal, false);
                refused_prune = *refusal;
            }
            // The map-side checks run even when rows are already bad, so one run names every bad row.
            const bool write = !options.dry_run && errors.empty();
            import_rows(t, shape, staged, prune, errors, diff, counts, write);
            if (!errors.empty()) throw DataError(errors.report());  // aborts: nothing written
            finish_import(t, shape, staged, prune, diff, counts, !options.dry_run);
            rows = staged.rows();
            taken = shape;
            if (options.dry_run) throw DryRunEnd{};
        });
    } catch (const DryRunEnd&) {
    }
    // Said only of an import that takes them (or would): a failed one takes nothing.
    if (taken.empty_states)
        err << "coexist-map: " << empty_state_warning(file, taken.empty_states, taken.empty_state_lines) << '\n';

    diff.print(out);
    // The dry run has listed what the prune would remove; it ends as the real run would, with a
    // data error, so that a script checking the dry run's status does not go on to run it.
    if (refused_prune) throw DataError(fmt::format("{}: {}: the import is refused without --force", file, *refused_prune));
    out << fmt::format("{} {} {} from {}: {}\n", options.dry_run ? "would import" : "imported", rows,
                       rows == 1 ? "row" : "rows", file, summary(counts));
    return kOk;
}

int import_csv(const Config& c, const std::string& file, const std::optional<std::string>& batch, bool dry_run,
               std::ostream& out) {
    return import_csv(c, file, ImportOptions{batch, dry_run, false, std::nullopt, false}, out, std::cerr);
}

}  // namespace coexist::tool
