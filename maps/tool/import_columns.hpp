// `coexist-map import`, stage "header mapping" (design 10 and 13.4): which cell of a row is which
// field, from the header row of the files admins have. Our own export (address, state, target,
// batch, aliases), Microsoft's migration batch CSV (EmailAddress), GAM's `print users`
// (primaryEmail and many more columns) and LDAP exports (mail) all name the address.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "coexist/csv.hpp"

namespace coexist::tool {

struct ImportColumns {
    // Index of each field's cell in a row; -1 when the file has no such column.
    int address = -1, state = -1, target = -1, batch = -1, aliases = -1;
    // A scheduled change, as export writes it (design 10): state and ISO 8601 time.
    int pending_state = -1, pending_at = -1;
    // Named header cells; a spreadsheet's empty trailing header cells are not counted.
    std::size_t count = 0;
    // Header cells that name none of the fields, as the file spells them, in file order. Their
    // cells are ignored (GAM's name.fullName, orgUnitPath; the UserName and Password columns of
    // an IMAP migration batch).
    std::vector<std::string> ignored;
};

// Maps the header row. Names are case-insensitive; `address` is also `EmailAddress`,
// `primaryEmail` or `mail`. Throws DataError ("FILE:LINE: reason") when there is no address
// column, when two columns name the same field (naming both), when a header cell before the
// last named one is empty, or when an ignored column looks like a field the file lacks
// ("Stat", "Status", "alias", "Targets": one edit away, or a common other name) since ignoring
// a misspelt state column would make every user migrated.
ImportColumns map_import_header(const std::string& file, const CsvRecord& header);

// "FILE:LINE: ignoring columns ...: a, b" for the one warning line; "" when nothing is ignored.
std::string ignored_columns_warning(const std::string& file, std::size_t line, const ImportColumns& columns);

}  // namespace coexist::tool
