// `coexist-map import`, stage "row validation" (design 10 and 13.4): every bad row is reported
// in one run, so a file with seven mistakes takes one fix, not seven runs. One reason per row
// (the first found); the report keeps the first kMaxReported rows by line and counts the rest,
// so a file that is wrong on every one of a million rows gives a screenful, not a million lines.
#pragma once

#include <cstddef>
#include <iterator>
#include <map>
#include <set>
#include <string>

#include <fmt/format.h>

namespace coexist::tool {

class ImportErrors {
public:
    static constexpr std::size_t kMaxReported = 100;

    explicit ImportErrors(std::string file) : file_(std::move(file)) {}

    // Records why the row starting on `line` is bad; a second reason for the same row is dropped.
    void add(std::size_t line, std::string reason) {
        if (!lines_.insert(line).second) return;
        kept_.emplace(line, std::move(reason));
        if (kept_.size() > kMaxReported) kept_.erase(std::prev(kept_.end()));  // keep the earliest lines
    }
    bool has(std::size_t line) const { return lines_.count(line) != 0; }
    std::size_t count() const { return lines_.size(); }
    bool empty() const { return lines_.empty(); }

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
    std::set<std::size_t> lines_;              // every bad row's line (for has() and count())
};

}  // namespace coexist::tool
