// Reading one Postfix setting the way Postfix itself resolves it: by running postconf(1), so
// defaults, compatibility_level and $name expansion are Postfix's, not a guess of ours.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace coexist::tool {

struct PostconfResult {
    std::optional<std::string> value;  // the expanded value; nullopt when it could not be read
    std::string problem;               // why not ("postconf not found", "no main.cf in DIR", ...)
};

// `postconf -c config_dir -x -h name` (postconf(1): -h the value only, -x with $name expanded).
// Looks for postconf in PATH, then /usr/sbin. Never throws beyond std::bad_alloc.
PostconfResult read_postfix_setting(const std::string& config_dir, const std::string& name);

// One master.cf "-o name=value" override of one service (postconf(1) -P: "service/type/name =
// value").
struct MasterOverride {
    std::string service;  // "rewrite/unix"
    std::string name;
    std::string value;
};

// `postconf -c config_dir -P`: every master.cf override, in master.cf's order; lines postconf
// prints in another form are skipped. nullopt with the problem when postconf, main.cf or
// master.cf cannot be read. Never throws beyond std::bad_alloc.
std::optional<std::vector<MasterOverride>> read_master_overrides(const std::string& config_dir,
                                                                 std::string& problem);

}  // namespace coexist::tool
