#include "coexist/accounts.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fmt/format.h>
#include <vector>

#include "coexist/system_error.hpp"

namespace coexist {

namespace {

// getpw*_r/getgr*_r with a buffer that doubles on ERANGE (a group with many members can need
// more than 16 KiB), up to 1 MiB. `convert` copies what we keep out of the entry while its
// strings, which point into the buffer, are still valid.
template <typename Entry, typename Result, typename Lookup, typename Convert>
std::optional<Result> lookup(const std::string& what, Lookup&& call, Convert&& convert) {
    constexpr std::size_t kMaxBuffer = std::size_t{1} << 20;
    std::vector<char> buf(16384);
    for (;;) {
        Entry entry{};
        Entry* found = nullptr;
        const int rc = call(&entry, buf.data(), buf.size(), &found);
        if (rc == ERANGE && buf.size() < kMaxBuffer) {
            buf.resize(buf.size() * 2);
            continue;
        }
        // "Not found" is 0 with no entry, or ENOENT/ESRCH/EBADF/EPERM from some NSS modules
        // (getpwnam_r(3), NOTES).
        if (rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM) {
            if (!found) return std::nullopt;
            return convert(*found);
        }
        throw SystemError(fmt::format("cannot look up {}", what), rc);
    }
}

SystemUser to_user(const passwd& pw) { return {pw.pw_name, pw.pw_uid, pw.pw_gid}; }
SystemGroup to_group(const group& gr) { return {gr.gr_name, gr.gr_gid}; }

}  // namespace

std::optional<SystemUser> find_user(const std::string& name) {
    return lookup<passwd, SystemUser>(
        fmt::format("user '{}'", name),
        [&](passwd* e, char* b, std::size_t n, passwd** f) { return ::getpwnam_r(name.c_str(), e, b, n, f); },
        to_user);
}

std::optional<SystemUser> find_user(uid_t uid) {
    return lookup<passwd, SystemUser>(
        fmt::format("uid {}", uid),
        [&](passwd* e, char* b, std::size_t n, passwd** f) { return ::getpwuid_r(uid, e, b, n, f); },
        to_user);
}

std::optional<SystemGroup> find_group(const std::string& name) {
    return lookup<group, SystemGroup>(
        fmt::format("group '{}'", name),
        [&](group* e, char* b, std::size_t n, group** f) { return ::getgrnam_r(name.c_str(), e, b, n, f); },
        to_group);
}

std::optional<SystemGroup> find_group(gid_t gid) {
    return lookup<group, SystemGroup>(
        fmt::format("gid {}", gid),
        [&](group* e, char* b, std::size_t n, group** f) { return ::getgrgid_r(gid, e, b, n, f); },
        to_group);
}

std::string current_user_name() {
    if (const char* sudo = std::getenv("SUDO_USER"); sudo && *sudo) return std::string(sudo).substr(0, 64);
    try {
        if (const auto u = find_user(::getuid())) return u->name;
    } catch (const SystemError&) {
        // fall through: the audit trail still gets the uid
    }
    return fmt::format("uid {}", ::getuid());
}

std::string primary_group_name(const std::string& user) noexcept {
    try {
        if (const auto u = find_user(user)) {
            if (const auto g = find_group(u->gid)) return g->name;
            return std::to_string(u->gid);
        }
    } catch (...) {
    }
    return "GROUP";
}

}  // namespace coexist
