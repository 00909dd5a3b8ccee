// `coexist-map import`, the map side (design 10 and 13.4): the checked rows of a file compared
// with the map inside one transaction, as a diff an admin can read (--dry-run prints it all, the
// real run prints what it removes), then written in that same transaction.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "coexist/map_store.hpp"
#include "import_errors.hpp"

namespace coexist::tool {

struct ImportRow {
    std::size_t line = 0;
    std::string key;
    UserRecord record;
    std::vector<std::string> aliases;  // keys; the user's whole list when the file has the column
};

// A file after the decode, CSV, header and row stages: its good rows in key order.
struct ImportFile {
    std::string name;
    std::vector<ImportRow> rows;
    // The keys of the bad rows whose address is valid (so a row with a bad state does not make
    // its user look "not in the file" to the other checks).
    std::vector<std::string> bad_row_keys;
    // An `aliases` column is present: each row's list is the user's full alias list. Absent: the
    // users' aliases are left as they are.
    bool has_aliases = false;
    // Likewise a file without a `target` column (or without a `batch` column and no --batch)
    // leaves an existing user's target (batch) as it is: Microsoft's batch CSV must not wipe an
    // explicit routing address. An empty cell of a present column clears it, as export writes it.
    bool keeps_target = false, keeps_batch = false;
    // The file has pending_state/pending_at columns (an export): each row's scheduled change, or
    // none when its cells are empty.
    bool has_pending = false;
};

// --prune: remove the admin-owned users not in the file, of `batch` only when given.
struct PruneScope {
    bool enabled = false;
    std::optional<std::string> batch;
    // Without it, a prune that would remove more than half of the admin-owned users in scope
    // (and more than kPruneSafeCount) is refused: a one-row file given --prune by mistake must not
    // send most users back to the source, as sync's max_removals guards the directory's.
    bool force = false;
};
inline constexpr std::size_t kPruneSafeCount = 10;

struct ImportCounts {
    std::size_t added = 0, changed = 0, unchanged = 0, removed = 0;
    std::size_t aliases_added = 0, aliases_removed = 0;
};

// One line of the diff: "add KEY: ...", "change KEY: state A -> B, ...", "remove KEY: ...",
// "alias ALIAS -> KEY", "unalias ALIAS (of KEY)".
struct ImportChange {
    std::string text;
    bool removal = false;  // a user or an alias goes away: printed by the real run too
};

struct ImportPlan {
    ImportCounts counts;
    std::vector<ImportChange> changes;
    std::vector<std::string> prune;  // users to remove, in key order
};

// Checks the rows against the map (an address that is an alias in the map, an alias that is a
// user or belongs to a user the file does not restate, a directory-owned user), adding one
// reason per bad row to `errors`, and works out every change. Reads only.
// `full_diff`: keep every change (--dry-run); else only the removals, which the real run prints.
ImportPlan plan_import(MapTxn& t, const ImportFile& file, const PruneScope& prune, ImportErrors& errors,
                       bool full_diff);

// Writes `plan` (made by plan_import in this same transaction, with no errors): each write is
// audited by MapTxn, removals as `remove` audits them.
void apply_import(MapTxn& t, const ImportFile& file, const ImportPlan& plan);

}  // namespace coexist::tool
