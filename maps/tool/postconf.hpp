// Reading one Postfix setting the way Postfix itself resolves it: by running postconf(1), so
// defaults, compatibility_level and $name expansion are Postfix's, not a guess of ours.
#pragma once

#include <optional>
#include <string>

namespace coexist::tool {

struct PostconfResult {
    std::optional<std::string> value;  // the expanded value; nullopt when it could not be read
    std::string problem;               // why not ("postconf not found", "no main.cf in DIR", ...)
};

// `postconf -c config_dir -x -h name` (postconf(1): -h the value only, -x with $name expanded).
// Looks for postconf in PATH, then /usr/sbin. Never throws beyond std::bad_alloc.
PostconfResult read_postfix_setting(const std::string& config_dir, const std::string& name);

}  // namespace coexist::tool
