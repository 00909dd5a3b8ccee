#include "coexist/csv.hpp"

#include <fmt/format.h>

namespace coexist {

bool CsvReader::next(CsvRecord& record) {
    record.fields.clear();
    if (error_) return false;
    // Skip blank lines between records.
    while (pos_ < text_.size() && (text_[pos_] == '\n' || text_[pos_] == '\r')) {
        if (text_[pos_] == '\n') ++line_;
        ++pos_;
    }
    if (pos_ >= text_.size()) return false;

    record.line = line_;
    const std::size_t start = pos_;
    auto fail = [&](const std::string& why) {
        error_ = why;
        error_line_ = record.line;  // where the bad record starts: what an editor jumps to
        return false;
    };
    std::string field;
    for (;;) {
        if (pos_ - start > kMaxCsvRecordBytes) return fail("record longer than 64 KiB");
        if (pos_ < text_.size() && text_[pos_] == '"') {
            ++pos_;
            for (;;) {
                if (pos_ >= text_.size()) return fail("quoted field not closed");
                if (pos_ - start > kMaxCsvRecordBytes) return fail("record longer than 64 KiB");
                const char c = text_[pos_++];
                if (c == '"') {
                    if (pos_ < text_.size() && text_[pos_] == '"') {
                        field.push_back('"');
                        ++pos_;
                    } else {
                        break;
                    }
                } else {
                    if (c == '\n') ++line_;
                    field.push_back(c);
                }
            }
            if (pos_ < text_.size() && text_[pos_] != delimiter_ && text_[pos_] != '\n' && text_[pos_] != '\r')
                return fail("text after a closing quote");
        } else {
            while (pos_ < text_.size() && text_[pos_] != delimiter_ && text_[pos_] != '\n' && text_[pos_] != '\r') {
                if (text_[pos_] == '"') return fail("quote inside an unquoted field");
                if (pos_ - start > kMaxCsvRecordBytes) return fail("record longer than 64 KiB");
                field.push_back(text_[pos_++]);
            }
        }
        if (record.fields.size() >= kMaxCsvFields) return fail(fmt::format("more than {} fields", kMaxCsvFields));
        record.fields.push_back(std::move(field));
        field.clear();
        if (pos_ >= text_.size()) return true;
        const char sep = text_[pos_++];
        if (sep == delimiter_) continue;
        if (sep == '\r') {
            if (pos_ < text_.size() && text_[pos_] == '\n') ++pos_;
            else return fail("bare carriage return");
        }
        ++line_;
        return true;
    }
}

std::string csv_field(std::string_view value) {
    const bool needs_quotes = value.find_first_of(",\"\r\n") != std::string_view::npos ||
                              (!value.empty() && (value.front() == ' ' || value.back() == ' '));
    if (!needs_quotes) return std::string(value);
    std::string out = "\"";
    for (char c : value) {
        if (c == '"') out.push_back('"');
        out.push_back(c);
    }
    out.push_back('"');
    return out;
}

}  // namespace coexist
