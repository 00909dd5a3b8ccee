// Dropping root before serving, the same way in both daemons.
#pragma once

#include <string>

namespace coexist {

// If running as root: switch to `user` (initgroups, setgid, setuid) and verify root cannot be
// regained. No-op when not root. Throws SystemError naming the user.
void drop_privileges(const std::string& user);

}  // namespace coexist
