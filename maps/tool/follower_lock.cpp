#include "follower_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>

#include "coexist/map_reader.hpp"

namespace coexist::tool {

FollowerLock::FollowerLock(const std::string& map_path) {
    const std::string file = map_path + "/data.mdb";
    fd_ = FileDescriptor(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd_) throw MapUnavailable(fmt::format("cannot open {}: {}", file, std::strerror(errno)));
    int rc;
    do rc = ::flock(fd_.get(), LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc == 0) return;
    if (errno == EWOULDBLOCK)
        throw MapUnavailable(fmt::format(
            "another 'coexist-map sync --follow' is following the directory into {} already; one follower per "
            "map (two would apply every change twice and overwrite each other's cookie): stop the other one "
            "first, or give this one a map of its own",
            map_path));
    throw MapUnavailable(fmt::format("flock {}: {}", file, std::strerror(errno)));
}

}  // namespace coexist::tool
