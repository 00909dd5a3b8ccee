// `coexist-map check` (design sections 12 and 13.6): what would make the daemons defer all mail,
// found before a restart, with the same checks as their `-n` (daemon/preflight.hpp).
#pragma once

#include <iosfwd>
#include <string>

#include "coexist/config.hpp"

namespace coexist::tool {

inline constexpr const char* kDefaultPostfixConfigDir = "/etc/postfix";

// For a loaded (so already valid) configuration:
//   - each daemon's run-as user ([milter] user, [policyd] user) exists, the groups of their unix
//     sockets exist, and the map answers one lookup as that user (a child process drops to it
//     when run as root; otherwise the lookup is made as the current user);
//   - Postfix's smtputf8_enable in `postfix_dir` (read with postconf): a warning when it is off,
//     a note when postconf or main.cf is missing (then it is not checked).
// Prints what it checked to `out`, problems and warnings to `err`. Returns kOk (warnings
// included) or kMapUnavailable (3) when a daemon could not read the map or start.
int check(const Config& c, const std::string& config_path, const std::string& postfix_dir, std::ostream& out,
          std::ostream& err);

// After `coexist-map init` as root: whether each daemon's run-as user can read the map (the
// map part of check()), so that a directory the daemons cannot use (root:root 0755: they can
// read data.mdb but not write lock.mdb) is said where the map is made, not at the first message.
// Only a warning on `err`: the map itself is fine, and coexist-map alone (a staging copy, a
// relay whose daemons are not installed yet) may use it so; `check` is the command that fails.
// Nothing when not root (nobody to check as).
void warn_unless_daemons_read_map(const Config& c, std::ostream& err);

}  // namespace coexist::tool
