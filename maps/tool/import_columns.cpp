#include "import_columns.hpp"

#include <array>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <string_view>
#include <utility>

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

// The field an ignored column was probably meant to be, if that field has no column: a
// misspelt `state` column would otherwise make every user of the file migrated, silently.
const FieldName* meant_as(const ImportColumns& cols, const std::string& name) {
    for (const auto& f : kFieldNames) {
        if (cols.*(f.column) != -1 || f.name != f.field) continue;  // present, or a synonym
        if (one_edit_apart(name, f.name) || (f.name == "state" && name == "status") ||
            (f.name == "aliases" && name == "alias"))
            return &f;
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
                                        file, header.line, header.fields[first], first + 1, cell, i + 1,
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
        if (const FieldName* f = meant_as(cols, ascii_lowercase(cell)))
            throw DataError(fmt::format("{}:{}: column '{}' is not read: rename it '{}' if that is what it holds, "
                                        "or remove it", file, header.line, cell, f->field));
    return cols;
}

std::string ignored_columns_warning(const std::string& file, std::size_t line, const ImportColumns& columns) {
    if (columns.ignored.empty()) return "";
    return fmt::format("{}:{}: ignoring {} (not address, state, target, batch or aliases): {}", file, line,
                       columns.ignored.size() == 1 ? "a column" : fmt::format("{} columns", columns.ignored.size()),
                       fmt::join(columns.ignored, ", "));
}

}  // namespace coexist::tool
