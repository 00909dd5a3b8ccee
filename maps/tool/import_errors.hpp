// `coexist-map import`, stage "row validation" (design 10 and 13.4): every bad row is reported
// in one run, so a file with seven mistakes takes one fix, not seven runs. One reason per row
// (the first found); the report keeps the first kMaxReported rows by line and counts the rest,
// so a file that is wrong on every one of a million rows gives a screenful, not a million lines.
#pragma once

#include <cstddef>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "coexist/log_text.hpp"

namespace coexist::tool {

class ImportErrors {
public:
    static constexpr std::size_t kMaxReported = 100;

    explicit ImportErrors(std::string file) : file_(std::move(file)) {}

    // Records why the row starting on `line` is bad. One reason per row: the callers give a
    // row at most one (the first found); a second reason for a kept row is dropped. The reason
    // may quote a cell: it is made one printable line (loggable(), at most kMaxReasonBytes),
    // so that a cell holding a line break or a terminal's escape codes cannot forge a line.
    void add(std::size_t line, std::string_view reason) {
        if (kept_.count(line)) return;
        ++count_;
        kept_.emplace(line, loggable(reason, kMaxReasonBytes));
        if (kept_.size() > kMaxReported) kept_.erase(std::prev(kept_.end()));  // keep the earliest lines
    }
    // The CSV error that ended the reading at the row starting on `line` (an unclosed quote, a
    // record over the limit): a bad row too, and always reported, after the others, since no
    // row after it was checked. Its row was never read as a record, so no add() named it.
    void reading_stopped(std::size_t line, std::string_view reason) {
        ++count_;
        stop_.emplace(line, loggable(reason, kMaxReasonBytes));
    }
    std::size_t count() const { return count_; }
    bool empty() const { return count_ == 0; }

    // "FILE:LINE: reason" per kept row in line order, "... and N more" beyond them, the row that
    // ended the reading, and a last line counting the bad rows. Empty when there are none.
    std::string report() const {
        std::string out;
        for (const auto& [line, reason] : kept_) out += fmt::format("{}:{}: {}\n", file_, line, reason);
        const std::size_t shown = kept_.size() + (stop_ ? 1 : 0);
        if (count() > shown) out += fmt::format("... and {} more\n", count() - shown);
        if (stop_)
            out += fmt::format("{}:{}: {}; the rows after it were not read\n", file_, stop_->first, stop_->second);
        out += fmt::format("{}: {} bad {}, nothing imported", file_, count(), count() == 1 ? "row" : "rows");
        return out;
    }

private:
    static constexpr std::size_t kMaxReasonBytes = 1024;
    std::string file_;
    std::map<std::size_t, std::string> kept_;  // the first kMaxReported bad rows by line
    std::optional<std::pair<std::size_t, std::string>> stop_;  // the row that ended the reading
    std::size_t count_ = 0;                    // every bad row: a count, not a list (design 13.4)
};

}  // namespace coexist::tool
