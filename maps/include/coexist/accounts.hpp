// The system's users and groups, looked up once here for every part of coexist (the daemons'
// privilege drop and socket ownership, the map's group, the audit trail's "who"): one place that
// calls getpwnam_r/getgrnam_r, with buffers that grow on ERANGE.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace coexist {

struct SystemUser {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;  // primary group
};

struct SystemGroup {
    std::string name;
    gid_t gid = 0;
};

// The user or group of that name; nullopt when it does not exist. Throws SystemError (system_error.hpp)
// when the lookup itself fails (NSS unreachable, out of memory): "not found" and "could not ask"
// are different answers, and a caller that must be sure (a pre-flight check) tells them apart.
std::optional<SystemUser> find_user(const std::string& name);
std::optional<SystemUser> find_user(uid_t uid);
std::optional<SystemGroup> find_group(const std::string& name);
std::optional<SystemGroup> find_group(gid_t gid);

// The name of `user`'s primary group (its number when the group has no name), for hints such as
// "chgrp GROUP FILE"; "GROUP" when the user does not exist or cannot be looked up. Never throws.
std::string primary_group_name(const std::string& user) noexcept;

// The login name to record in the audit trail: SUDO_USER when run through sudo, else the name of
// the real uid, else "uid N". Never throws.
std::string current_user_name();

}  // namespace coexist
