// RFC 4180 CSV, bounded: what `coexist-map import` reads and `export` writes.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coexist {

inline constexpr std::size_t kMaxCsvRecordBytes = 64 * 1024;
// GAM's `print users allfields` writes a few hundred columns; the record's byte limit bounds the
// memory either way.
inline constexpr std::size_t kMaxCsvFields = 1024;

struct CsvRecord {
    std::size_t line = 0;  // line the record starts on (1-based)
    std::vector<std::string> fields;
    // Set (and fields empty) for a record whose error cannot have opened a quoted field: a
    // quote inside an unquoted field, text after a closing quote, more than kMaxCsvFields
    // fields, a bare carriage return. Its line ends where the next line break is, so the
    // reader skips to it and reads on: one run names every such row.
    std::optional<std::string> error;
};

// Splits text into records. Quoted fields may hold commas, quotes ("") and line breaks;
// CRLF and LF both end a record; a trailing newline does not make an empty record; blank lines
// are skipped. A malformed record that ends at its line break comes back with its `error`
// set; one that may not (a quoted field not closed, a record over kMaxCsvRecordBytes) ends the
// reading, with error() and error_line().
class CsvReader {
public:
    // Appends the next piece of the text to `buffer`; false when there is no more.
    using Source = std::function<bool(std::string& buffer)>;

    // `delimiter`: ',' for CSV, '\t' for the tab-separated text that Excel saves as "Unicode Text".
    explicit CsvReader(std::string_view text, char delimiter = ',') : text_(text), delimiter_(delimiter) {}
    // The text a piece at a time (import's file): `first` is what has been read already, `more`
    // gives the rest. Holds one record plus one piece, never the whole text (records are
    // bounded by kMaxCsvRecordBytes).
    CsvReader(std::string first, Source more, char delimiter)
        : buffer_(std::move(first)), text_(buffer_), delimiter_(delimiter), more_(std::move(more)) {}
    CsvReader(const CsvReader&) = delete;
    CsvReader& operator=(const CsvReader&) = delete;

    // False at the end or on an error that ends the reading (then error() is set).
    bool next(CsvRecord& record);
    const std::optional<std::string>& error() const { return error_; }
    std::size_t error_line() const { return error_line_; }

private:
    enum class Step { record, end, need_more };
    Step parse(CsvRecord& record);

    std::string buffer_;  // the unread text of a Source
    std::string_view text_;
    char delimiter_;
    Source more_;  // empty when all the text is in text_
    std::size_t pos_ = 0;
    std::size_t line_ = 1;
    std::optional<std::string> error_;
    std::size_t error_line_ = 0;
};

// One field, quoted only when it must be (comma, quote, CR, LF, or leading/trailing space).
std::string csv_field(std::string_view value);

}  // namespace coexist
