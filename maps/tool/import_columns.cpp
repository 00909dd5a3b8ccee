#include "import_columns.hpp"

#include <algorithm>

#include <array>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <string_view>
#include <utility>

#include "coexist/log_text.hpp"
#include "commands.hpp"

namespace coexist::tool {

namespace {

struct FieldName {
    std::string_view name;  // lowercase, as compared
    int ImportColumns::*column;
    std::string_view field;  // what an error calls the field
};

// The synonyms of design section 10: Microsoft's migration batches (EmailAddress), GAM's
// `print users` (primaryEmail), LDAP and AD exports (mail).
constexpr std::array<FieldName, 10> kFieldNames{{
    {"address", &ImportColumns::address, "address"},
    {"emailaddress", &ImportColumns::address, "address"},
    {"primaryemail", &ImportColumns::address, "address"},
    {"mail", &ImportColumns::address, "address"},
    {"state", &ImportColumns::state, "state"},
    {"target", &ImportColumns::target, "target"},
    {"batch", &ImportColumns::batch, "batch"},
    {"aliases", &ImportColumns::aliases, "aliases"},
    {"pending_state", &ImportColumns::pending_state, "pending_state"},
    {"pending_at", &ImportColumns::pending_at, "pending_at"},
}};

std::string ascii_lowercase(std::string_view v) {
    std::string out(v);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

// True when `a` becomes `b` by one insertion, deletion, substitution or swap of two neighbours
// ("stat", "States", "tagret").
bool one_edit_apart(std::string_view a, std::string_view b) {
    if (a.size() > b.size()) std::swap(a, b);
    if (b.size() - a.size() > 1) return false;
    std::size_t i = 0;
    while (i < a.size() && a[i] == b[i]) ++i;
    if (a.size() != b.size()) return a.substr(i) == b.substr(i + 1);
    if (i == a.size()) return true;
    if (a.substr(i + 1) == b.substr(i + 1)) return true;
    return i + 1 < a.size() && a[i] == b[i + 1] && a[i + 1] == b[i] && a.substr(i + 2) == b.substr(i + 2);
}

// A header's letters and digits, lowercase: "Migration State", "migration_state" and
// "MigrationState" all give "migrationstate"; GAM's "aliases.0" gives "aliases0".
std::string letters_and_digits(std::string_view v) {
    std::string out;
    for (char c : v) {
        if (c >= 'A' && c <= 'Z') out += static_cast<char>(c - 'A' + 'a');
        else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) out += c;
    }
    return out;
}

// Whether a column named `name` (letters_and_digits) reads as one of the fields that change
// where mail goes, under another name than coexist's: a state ("Migration State", "UserState",
// "Status"), a target ("Target Address", Exchange's targetAddress, "ForwardingAddress") or
// aliases (GAM's "aliases.0", "aliases.1", ...; not its nonEditableAliases, Google's own).
bool other_name_of(std::string_view field, std::string_view name) {
    const auto has = [&](std::string_view part) { return name.find(part) != std::string_view::npos; };
    if (field == "state") return has("state") || has("status");
    if (field == "target") return has("target") || name.rfind("forward", 0) == 0;
    if (field == "aliases") return name.rfind("alias", 0) == 0;
    return false;
}

// The field an ignored column was probably meant to be, if that field has no column: a
// misspelt or otherwise named `state` column would make every user of the file migrated,
// silently; an ignored target or aliases column would leave those addresses routed as before.
const FieldName* meant_as(const ImportColumns& cols, const std::string& cell) {
    const std::string name = ascii_lowercase(cell);
    for (const auto& f : kFieldNames) {
        if (cols.*(f.column) != -1 || f.name != f.field) continue;  // present, or a synonym
        if (one_edit_apart(name, f.name) || other_name_of(f.name, letters_and_digits(cell))) return &f;
    }
    return nullptr;
}

}  // namespace

ImportColumns map_import_header(const std::string& file, const CsvRecord& header) {
    ImportColumns cols;
    std::size_t named = header.fields.size();
    while (named > 0 && header.fields[named - 1].empty()) --named;  // ",,," after the last name
    cols.count = named;
    for (std::size_t i = 0; i < named; ++i) {
        const std::string& cell = header.fields[i];
        if (cell.empty()) throw DataError(fmt::format("{}:{}: column {} has no name", file, header.line, i + 1));
        // A column name with a control character is no name anyone typed on purpose; ignored, it
        // would also slip past the check for a misspelt state, target or aliases column.
        if (std::any_of(cell.begin(), cell.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }))
            throw DataError(fmt::format("{}:{}: the name of column {}, '{}', holds a control character", file,
                                        header.line, i + 1, loggable(cell, 64)));
        const std::string name = ascii_lowercase(cell);  // "Address", "EmailAddress", "primaryEmail"
        const FieldName* known = nullptr;
        for (const auto& f : kFieldNames)
            if (f.name == name) known = &f;
        if (!known) {
            cols.ignored.push_back(cell);
            continue;
        }
        int& slot = cols.*(known->column);
        if (slot != -1) {
            const auto first = static_cast<std::size_t>(slot);
            throw DataError(fmt::format("{}:{}: columns '{}' ({}) and '{}' ({}) are both the {}: keep one",
                                        file, header.line, loggable(header.fields[first]), first + 1, loggable(cell), i + 1,
                                        known->field));
        }
        slot = static_cast<int>(i);
    }
    if ((cols.pending_state == -1) != (cols.pending_at == -1))
        throw DataError(fmt::format("{}:{}: pending_state and pending_at go together (a scheduled change)", file,
                                    header.line));
    if (cols.address == -1)
        throw DataError(fmt::format("{}:{}: no 'address' column (also read as EmailAddress, primaryEmail or mail)",
                                    file, header.line));
    for (const auto& cell : cols.ignored)
        if (const FieldName* f = meant_as(cols, cell))
            throw DataError(fmt::format("{}:{}: column '{}' is not read: rename it '{}' if that is what it holds{}, "
                                        "or remove it", file, header.line, loggable(cell), f->field,
                                        f->field == "aliases" ? " (all of a user's aliases in one cell, separated by ';')"
                                                              : ""));
    return cols;
}

std::string ignored_columns_warning(const std::string& file, std::size_t line, const ImportColumns& columns) {
    if (columns.ignored.empty()) return "";
    return fmt::format("{}:{}: ignoring {} (not address, state, target, batch or aliases): {}", file, line,
                       columns.ignored.size() == 1 ? "a column" : fmt::format("{} columns", columns.ignored.size()),
                       fmt::join(columns.ignored, ", "));
}

}  // namespace coexist::tool
