#include "coexist/listen.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "coexist/accounts.hpp"

namespace coexist {

void remove_stale_unix_socket(const std::string& path) {
    struct stat st{};
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return;
        throw SystemError("stat " + path, errno);
    }
    if (!S_ISSOCK(st.st_mode))
        throw std::invalid_argument(path + " exists and is not a socket: refusing to remove it");
    // A socket file someone still listens on belongs to a running server: don't steal it.
    FileDescriptor probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!probe) throw SystemError("socket", errno);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0)
        throw std::invalid_argument(path + " is in use by a running server");
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) throw SystemError("unlink " + path, errno);
}

void apply_socket_permissions(const std::string& path, const SocketConfig& cfg) {
    if (!cfg.group.empty()) {
        const auto found = find_group(cfg.group);
        if (!found) throw SystemError("unknown group '" + cfg.group + "' for " + path, ENOENT);
        if (::chown(path.c_str(), static_cast<uid_t>(-1), found->gid) != 0)
            throw SystemError("chgrp " + cfg.group + " " + path, errno);
    }
    if (::chmod(path.c_str(), cfg.mode) != 0) throw SystemError("chmod " + path, errno);
}

FileDescriptor listen_on(const SocketConfig& cfg, int backlog) {
    const auto spec = parse_socket_spec(cfg.spec);
    if (!spec) throw std::invalid_argument("bad socket specification '" + cfg.spec + "'");

    if (spec->family == SocketSpec::Family::unix_path) {
        remove_stale_unix_socket(spec->path);
        FileDescriptor fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (!fd) throw SystemError("socket", errno);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, spec->path.c_str(), sizeof(addr.sun_path) - 1);
        // Created with no access for others; the configured group and mode are applied before
        // anyone can be expected to connect.
        const mode_t old_umask = ::umask(0077);
        const int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        const int bind_errno = errno;
        ::umask(old_umask);
        if (rc != 0) throw SystemError("bind " + spec->path, bind_errno);
        apply_socket_permissions(spec->path, cfg);
        if (::listen(fd.get(), backlog) != 0) throw SystemError("listen " + spec->path, errno);
        return fd;
    }

    const bool v6 = spec->family == SocketSpec::Family::inet6;
    FileDescriptor fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) throw SystemError("socket", errno);
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (v6) {
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(spec->port);
        inet_pton(AF_INET6, spec->host.c_str(), &a.sin6_addr);
        rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    } else {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(spec->port);
        inet_pton(AF_INET, spec->host.c_str(), &a.sin_addr);
        rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
    }
    if (rc != 0) throw SystemError("bind " + cfg.spec, errno);
    if (::listen(fd.get(), backlog) != 0) throw SystemError("listen " + cfg.spec, errno);
    return fd;
}

}  // namespace coexist
