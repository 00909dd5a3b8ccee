// Fuzz target: CSV import files. Whatever comes in, the reader ends (record or error) and every
// field it returns survives csv_field() + reading back.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "coexist/csv.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    coexist::CsvReader reader(input);
    coexist::CsvRecord record;
    std::size_t records = 0;
    while (reader.next(record)) {
        if (++records > size + 1) __builtin_trap();  // progress: never more records than bytes
        if (record.error) {  // a bad line, skipped: no fields
            if (!record.fields.empty()) __builtin_trap();
            continue;
        }
        if (record.fields.empty() || record.fields.size() > coexist::kMaxCsvFields) __builtin_trap();
        std::string line;
        for (std::size_t i = 0; i < record.fields.size(); ++i) {
            if (i) line += ',';
            line += coexist::csv_field(record.fields[i]);
        }
        // A lone empty field writes as a blank line, which the reader skips by design.
        if (record.fields.size() == 1 && record.fields[0].empty()) continue;
        line += "\n";
        coexist::CsvReader again(line);
        coexist::CsvRecord back;
        if (!again.next(back)) __builtin_trap();
        if (back.fields != record.fields) __builtin_trap();
    }
    return 0;
}
