#include "coexist/privileges.hpp"

#include <grp.h>  // initgroups
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

#include "coexist/accounts.hpp"
#include "coexist/system_error.hpp"

namespace coexist {

void drop_privileges(const std::string& user) {
    if (::geteuid() != 0) return;
    const auto found = find_user(user);
    if (!found) throw SystemError("unknown user '" + user + "'", ENOENT);
    if (found->uid == 0) throw std::invalid_argument("refusing to run as root: user '" + user + "' has uid 0");
    if (::initgroups(found->name.c_str(), found->gid) != 0) throw SystemError("initgroups " + user, errno);
    if (::setgid(found->gid) != 0) throw SystemError("setgid " + user, errno);
    if (::setuid(found->uid) != 0) throw SystemError("setuid " + user, errno);
    if (::setuid(0) == 0) throw std::runtime_error("dropped to '" + user + "' but could regain root");
}

}  // namespace coexist
