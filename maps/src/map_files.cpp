#include "map_files.hpp"

#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "coexist/map_reader.hpp"  // MapUnavailable

namespace coexist {

void create_map_directory(const std::string& dir, std::optional<gid_t> group) {
    if (::mkdir(dir.c_str(), 0750) != 0) {
        if (errno == EEXIST) return;
        throw MapUnavailable("cannot create map directory " + dir + ": " + std::strerror(errno));
    }
    // mkdir's mode passes through the umask and cannot set setgid portably: set both now.
    if (group && ::chown(dir.c_str(), static_cast<uid_t>(-1), *group) != 0)
        throw MapUnavailable("cannot give map directory " + dir + " group " + std::to_string(*group) + ": " +
                             std::strerror(errno));
    if (::chmod(dir.c_str(), 02750) != 0)
        throw MapUnavailable("cannot set the mode of map directory " + dir + ": " + std::strerror(errno));
}

void repair_map_files(const std::string& dir) noexcept {
    struct stat d{};
    if (::stat(dir.c_str(), &d) != 0) return;
    for (const auto& [name, mode] : {std::pair{"/data.mdb", 0640}, std::pair{"/lock.mdb", 0660}}) {
        // By path, not through a descriptor of our own: closing any descriptor of lock.mdb
        // would drop every fcntl lock this process holds on it, LMDB's included (see
        // map_reader.cpp). lstat and lchown do not follow a link; chmod would, but a link
        // swapped in after the lstat is one only the directory's owner can make, and the
        // caller acts as that owner then (MapOwnerIdentity).
        const std::string file = dir + name;
        struct stat f{};
        if (::lstat(file.c_str(), &f) != 0 || !S_ISREG(f.st_mode)) continue;
        if (f.st_gid != d.st_gid && ::lchown(file.c_str(), static_cast<uid_t>(-1), d.st_gid) != 0) continue;
        if ((f.st_mode & 07777) != static_cast<mode_t>(mode)) (void)::chmod(file.c_str(), static_cast<mode_t>(mode));
    }
}

void refuse_irregular_map_files(const std::string& dir) {
    for (const char* name : {"/data.mdb", "/lock.mdb"}) {
        struct stat f{};
        if (::lstat((dir + name).c_str(), &f) != 0) continue;
        if (!S_ISREG(f.st_mode))
            throw MapUnavailable(dir + name + " is not a regular file" +
                                 (S_ISLNK(f.st_mode) ? " but a symbolic link" : "") + ": not opened");
    }
}

namespace {

// setgroups(2) for the calling thread only: glibc's setgroups() changes every thread of the
// process (it signals each to make the call); the system call itself changes the caller's.
bool set_thread_groups(const std::vector<gid_t>& groups) noexcept {
    return ::syscall(SYS_setgroups, groups.size(), groups.empty() ? nullptr : groups.data()) == 0;
}

}  // namespace

MapOwnerIdentity::MapOwnerIdentity(const std::string& dir) {
    if (::geteuid() != 0) return;
    struct stat d{};
    if (::stat(dir.c_str(), &d) != 0 || d.st_uid == 0) return;
    // Root's supplementary groups go too: a link to a file that group root (or another of
    // root's groups) may write would otherwise still be written through them.
    const int count = ::getgroups(0, nullptr);
    if (count < 0) throw MapUnavailable("getgroups: " + std::string(std::strerror(errno)));
    saved_groups_.resize(static_cast<std::size_t>(count));
    if (::getgroups(count, saved_groups_.data()) != count)
        throw MapUnavailable("getgroups: " + std::string(std::strerror(errno)));
    if (!set_thread_groups({}))
        throw MapUnavailable("cannot drop root's groups to open " + dir + " as its owner: " + std::strerror(errno));
    old_gid_ = static_cast<gid_t>(::setfsgid(d.st_gid));
    old_uid_ = static_cast<uid_t>(::setfsuid(d.st_uid));
    uid_ = d.st_uid;
    switched_ = true;  // from here on the destructor restores, whatever succeeded
    // setfsuid() and setfsgid() return the previous value whether or not they succeeded: ask
    // again. Without the owner's identity (root without CAP_SETUID) nothing is opened as root.
    if (static_cast<uid_t>(::setfsuid(static_cast<uid_t>(-1))) != d.st_uid ||
        static_cast<gid_t>(::setfsgid(static_cast<gid_t>(-1))) != d.st_gid) {
        restore();
        throw MapUnavailable("cannot act as the owner (uid " + std::to_string(d.st_uid) + ") of " + dir +
                             " to open it: not opened as root");
    }
}

void MapOwnerIdentity::restore() noexcept {
    if (!switched_) return;
    switched_ = false;
    (void)::setfsuid(old_uid_);
    (void)::setfsgid(old_gid_);
    (void)set_thread_groups(saved_groups_);
}

MapOwnerIdentity::~MapOwnerIdentity() { restore(); }

}  // namespace coexist
