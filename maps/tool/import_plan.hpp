// `coexist-map import`, the map side (design 10 and 13.4): the staged rows of a file compared
// with the map inside the one write transaction, as a diff an admin can read (--dry-run prints
// it all, the real run prints what it removes), and written in that same transaction, row by
// row in key order.
#pragma once

#include <cstddef>
#include <cstdio>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "coexist/map_store.hpp"
#include "import_errors.hpp"
#include "import_stage.hpp"

namespace coexist::tool {

// What the file's header says about its rows.
struct ImportShape {
    std::string name;
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
    // Rows staged with an empty cell in a state column, without --state: they take migrated.
    // Counted, and the first kEmptyStateLinesShown lines kept, for the warning of a good import.
    std::size_t empty_states = 0;
    std::vector<std::size_t> empty_state_lines;
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

// The diff, one line a change: "add KEY: ...", "change KEY: state A -> B, ...", "remove KEY:
// ...", "alias ALIAS -> KEY", "unalias ALIAS (of KEY)". Every line (--dry-run) or the removals
// only (the real run prints them), in an unnamed temporary file rather than in memory: a
// million-user diff is printed only once the transaction has come to its end.
class ImportDiff {
public:
    explicit ImportDiff(bool full);
    bool full() const { return full_; }
    void note(std::string_view text, bool removal);
    void clear();                    // a transaction run again from the start
    void print(std::ostream& out);  // every line noted, in order
private:
    bool full_;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> spool_;
};

// Before anything is written: refuses a prune of more than half of the users in scope (and
// more than kPruneSafeCount) without --force; the reason, or nothing when the prune may go on.
std::optional<std::string> prune_refusal(MapTxn& t, StagedRows& staged, const PruneScope& prune);

// Checks each staged row against the map (an address that is an alias in the map, an alias
// that is a user in the file or in the map or belongs to a user the file does not restate, a
// directory-owned user), adding one reason per bad row to `errors`; notes each change in
// `diff`; counts. While `write` holds and no row has failed, writes each row's user and takes
// away the aliases the row no longer lists (each write audited by MapTxn); the file's aliases
// are written by finish_import, once every user that gives one up has done so.
void import_rows(MapTxn& t, const ImportShape& shape, StagedRows& staged, const PruneScope& prune,
                 ImportErrors& errors, ImportDiff& diff, ImportCounts& counts, bool write);

// After import_rows, with no bad row: the prune's removals (noted; removed with their aliases
// when `write`, audited as `remove` audits them), then the file's aliases written.
void finish_import(MapTxn& t, const ImportShape& shape, StagedRows& staged, const PruneScope& prune,
                   ImportDiff& diff, ImportCounts& counts, bool write);

}  // namespace coexist::tool
