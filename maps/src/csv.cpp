#include "coexist/csv.hpp"

#include <fmt/format.h>

namespace coexist {

bool CsvReader::next(CsvRecord& record) {
    for (;;) {
        const Step step = parse(record);
        if (step != Step::need_more) return step == Step::record;
        // Keep only the record being read (parse() left pos_ at its start), add the next piece.
        buffer_.erase(0, pos_);
        pos_ = 0;
        if (!more_(buffer_)) more_ = nullptr;
        text_ = buffer_;
    }
}

// One record from pos_. Reaching the end of text_ while a Source has more gives need_more with
// pos_ and line_ back at the record's start: the record is parsed again with the next piece.
CsvReader::Step CsvReader::parse(CsvRecord& record) {
    record.fields.clear();
    record.error.reset();
    if (error_) return Step::end;
    // Skip blank lines between records.
    while (pos_ < text_.size() && (text_[pos_] == '\n' || text_[pos_] == '\r')) {
        if (text_[pos_] == '\n') ++line_;
        ++pos_;
    }
    if (pos_ >= text_.size()) return more_ ? Step::need_more : Step::end;

    record.line = line_;
    const std::size_t start = pos_, start_line = line_;
    auto fail = [&](const std::string& why) {
        error_ = why;
        error_line_ = record.line;  // where the bad record starts: what an editor jumps to
        return Step::end;
    };
    auto need_more = [&] {
        pos_ = start;
        line_ = start_line;
        return Step::need_more;
    };
    // The end of what has been read, but not of the text.
    auto cut = [&] { return pos_ >= text_.size() && more_; };
    // An error found outside any quoted field: the record ends at the next line break, so the
    // rest of its line is skipped and the reading goes on after it. A line longer than the
    // record limit ends the reading instead, with this first error and the length.
    auto bad_line = [&](const std::string& why) {
        for (;;) {
            if (cut()) return need_more();
            if (pos_ >= text_.size()) break;  // the last line, without a line break
            if (text_[pos_] == '\n') {
                ++pos_;
                ++line_;
                break;
            }
            if (pos_ - start >= kMaxCsvRecordBytes) return fail(why + ", on a line longer than 64 KiB");
            ++pos_;
        }
        record.fields.clear();
        record.error = why;
        return Step::record;
    };
    std::string field;
    for (;;) {
        if (pos_ - start > kMaxCsvRecordBytes) return fail("record longer than 64 KiB");
        if (cut()) return need_more();
        if (pos_ < text_.size() && text_[pos_] == '"') {
            ++pos_;
            for (;;) {
                if (cut()) return need_more();
                if (pos_ >= text_.size()) return fail("quoted field not closed");
                // Consuming the byte at pos_ makes the record pos_ - start + 1 bytes long.
                if (pos_ - start >= kMaxCsvRecordBytes) return fail("record longer than 64 KiB");
                const char c = text_[pos_++];
                if (c == '"') {
                    if (cut()) return need_more();  // "" or the closing quote: the next byte says
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
            if (pos_ < text_.size() && text_[pos_] != delimiter_ && text_[pos_] != '\n' && text_[pos_] != '\r') {
                if (pos_ - start >= kMaxCsvRecordBytes) return fail("record longer than 64 KiB");
                return bad_line("text after a closing quote");
            }
        } else {
            // The field's bytes appended at once (a push_back a byte was most of the parse's
            // instructions); the error is that of the first byte that has one, quote first.
            std::size_t end = pos_;
            while (end < text_.size() && text_[end] != delimiter_ && text_[end] != '\n' && text_[end] != '\r') ++end;
            const std::size_t too_long = start + kMaxCsvRecordBytes;  // the first byte past the limit
            const std::string_view run = text_.substr(pos_, end - pos_);
            if (const auto quote = run.find('"'); quote != std::string_view::npos && pos_ + quote < too_long)
                return bad_line("quote inside an unquoted field");
            if (too_long < end) return fail("record longer than 64 KiB");
            field.append(run);
            pos_ = end;
            if (cut()) return need_more();
        }
        if (record.fields.size() >= kMaxCsvFields) return bad_line(fmt::format("more than {} fields", kMaxCsvFields));
        record.fields.push_back(std::move(field));
        field.clear();
        if (pos_ >= text_.size()) return Step::record;  // the last record, without a line break
        const char sep = text_[pos_++];
        if (sep == delimiter_) continue;
        if (sep == '\r') {
            if (cut()) return need_more();
            if (pos_ < text_.size() && text_[pos_] == '\n') ++pos_;
            // A CR as the text's last byte ends the last record, as a missing LF would.
            else if (pos_ < text_.size()) return bad_line("bare carriage return (lines end with LF or CRLF)");
        }
        ++line_;
        return Step::record;
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
