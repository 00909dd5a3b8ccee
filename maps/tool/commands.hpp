// coexist-map's subcommands. Each takes the loaded config, writes what it prints to `out`, and
// reports failure by throwing (main.cpp turns the exception into the exit status).
#pragma once

#include <iosfwd>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "coexist/config.hpp"

namespace coexist::tool {

// Exit statuses (design section 4).
enum ExitStatus { kOk = 0, kUsage = 1, kDataError = 2, kMapUnavailable = 3 };

// Bad data from the admin: an address, a state, a CSV row. Exit 2, map unchanged.
class DataError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

int init(const Config& c, std::ostream& out);
int set(const Config& c, const std::string& address, const std::string& state,
        const std::optional<std::string>& target, const std::optional<std::string>& batch, std::ostream& out);
int remove(const Config& c, const std::string& address, std::ostream& out);
int alias(const Config& c, const std::string& alias, const std::string& primary, std::ostream& out);
int unalias(const Config& c, const std::string& alias, std::ostream& out);
int get(const Config& c, const std::string& address, std::ostream& out);
int route(const Config& c, const std::vector<std::string>& addresses, std::ostream& out);
int list(const Config& c, const std::optional<std::string>& state, const std::optional<std::string>& batch,
         std::ostream& out);
int export_csv(const Config& c, std::ostream& out);
int stats(const Config& c, std::ostream& out);
int history(const Config& c, const std::string& address, std::ostream& out);
int import_csv(const Config& c, const std::string& file, const std::optional<std::string>& batch, bool dry_run,
               std::ostream& out);

// Shared by the commands: the key of an address the admin gave, or DataError.
std::string user_key_or_throw(const Config& c, const std::string& address);
// A batch name: printable, no control bytes, at most 64 bytes. DataError otherwise.
std::string checked_batch(const std::string& batch);
std::string format_time(long long unix_time);

}  // namespace coexist::tool
