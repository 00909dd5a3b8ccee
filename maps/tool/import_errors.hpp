// `coexist-map import`, stage "row validation" (design 10 and 13.4): every bad row is reported
// in one run, so a file with seven mistakes takes one fix, not seven runs. One reason per row
// (the first found); the report keeps the first kMaxReported rows by line and counts the rest,
// so a file that is wrong on every one of a million rows gives a screenful, not a million lines.
#pragma once

#include <cstddef>
#include <iterator>
#include <map>
#include <string>

#include <fmt/format.h>

namespace coexist::tool {

class ImportErrors {
public:
    static constexpr std::size_t kMaxReported = 100;

    explicit ImportErrors(std::string file) : file_(std::move(file)) {}

    // Records why the row starting on `line` is bad. One reason per row: the callers give a
    // row at most one (the first found); a second reason for a kept row is dropped.
    void add(std::size_t line, std::string reason) {
        if (kept_.count(line)) return;
        ++count_;
        kept_.emplace(line, std::move(reason));
        if (kept_.size() > kMaxReported) kept_.erase(std::prev(kept_.end()));  // keep the earliest lines
    }
    std::size_t count() const { return count_; }
    bool empty() const { return count_ == 0; }

    // "FILE:LINE: reason" per kept row in line order, "... and N more" beyond them, and a last
    // line counting the bad rows. Empty when there are none.
    std::string report() const {
        std::string out;
        for (const auto& [line, reason] : kept_) out += fmt::format("{}:{}: {}\n", file_, line, reason);
        if (count() > kept_.size()) out += fmt::format("... and {} more\n", count() - kept_.size());
        out += fmt::format("{}: {} bad {}, nothing imported", file_, count(), count() == 1 ? "row" : "rows");
        return out;
    }

private:
    std::string file_;
    std::map<std::size_t, std::string> kept_;  // the first kMaxReported bad rows by line
    std::size_t count_ = 0;                    // every bad row: a count, not a list (design 13.4)
};

}  // namespace coexist::tool
