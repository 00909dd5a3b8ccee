#include "coexist/system_error.hpp"

#include <unistd.h>

#include <cstring>

namespace coexist {

SystemError::SystemError(const std::string& what, int err)
    : std::runtime_error(what + ": " + std::strerror(err)), error_(err) {}

void FileDescriptor::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

}  // namespace coexist
