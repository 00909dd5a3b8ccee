// `coexist-map import`, the rows of a file staged inside the write transaction (design 13.4):
// each checked row under its user's address, and every other address the file names (a bad
// row's user, a claimed alias), kept in the transaction's scratch databases (MapTxn::scratch_*),
// not in memory. So a user or an alias listed twice is found however far apart the two rows
// are, the rows come back in key order (LMDB writes fastest in order, and the diff reads best
// sorted), and the map-side checks can ask whether a user is in the file, while memory holds
// one row at a time. One scratch insert a row: the staged row itself answers user_line and
// in_file, so it stays to the end of the transaction.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coexist/map_store.hpp"

namespace coexist::tool {

struct ImportRow {
    std::size_t line = 0;
    std::string key;
    UserRecord record;  // the fields a file sets: state, target, batch, pending change
    std::vector<std::string> aliases;  // keys; the user's whole list when the file has the column
};

class StagedRows {
public:
    explicit StagedRows(MapTxn& t) : t_(t) {}

    // Stages a checked row. When a row of the same user is staged already, stages nothing and
    // returns the line of that first row.
    std::optional<std::size_t> add(const ImportRow& row);
    // Takes a staged row back (another of its checks failed): it is not imported, but its user
    // is still in the file.
    void withdraw(const ImportRow& row);
    // A bad row whose address is good: its user is in the file, so the other checks do not
    // take it for a user the file leaves out.
    void note_bad_row(std::string_view key);
    // Claims `alias` for the row on `line` (user `primary`). When another row claimed it
    // first, returns that row's line.
    std::optional<std::size_t> claim_alias(std::string_view alias, std::size_t line, std::string_view primary);

    // The line of the row (staged or taken back) whose user is `key`.
    std::optional<std::size_t> user_line(std::string_view key);
    // A row of the file names `key` as its user, good or bad.
    bool in_file(std::string_view key);
    // Rows staged and not taken back.
    std::size_t rows() const { return rows_; }

    // The staged rows in key order, taken back ones left out. `visit` may write to the map (not
    // stage rows): the rows stay staged, so user_line and in_file still answer during the visit.
    void for_each_row(const std::function<void(const ImportRow&)>& visit);
    // The claimed aliases in key order, with the user of the row that claimed them.
    void for_each_alias(const std::function<void(std::string_view alias, std::string_view primary)>& visit);

private:
    MapTxn& t_;
    std::size_t rows_ = 0;
};

}  // namespace coexist::tool
