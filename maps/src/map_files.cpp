#include "map_files.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

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
        const std::string file = dir + name;
        struct stat f{};
        if (::stat(file.c_str(), &f) != 0) continue;
        if (f.st_gid != d.st_gid && ::chown(file.c_str(), static_cast<uid_t>(-1), d.st_gid) != 0) continue;
        if ((f.st_mode & 07777) != static_cast<mode_t>(mode)) (void)::chmod(file.c_str(), static_cast<mode_t>(mode));
    }
}

}  // namespace coexist
