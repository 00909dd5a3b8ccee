#include "coexist/daemon.hpp"

#include "coexist/accounts.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>  // initgroups
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace coexist {

SystemError::SystemError(const std::string& what, int err)
    : std::runtime_error(what + ": " + std::strerror(err)), error_(err) {}

void FileDescriptor::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

std::optional<SocketSpec> parse_socket_spec(std::string_view spec) {
    SocketSpec out;
    auto strip = [&spec](std::string_view prefix) {
        if (spec.substr(0, prefix.size()) != prefix) return false;
        spec.remove_prefix(prefix.size());
        return true;
    };
    if (strip("unix:") || strip("local:") || (!spec.empty() && spec.front() == '/')) {
        if (spec.empty() || spec.front() != '/' || spec.size() >= sizeof(sockaddr_un::sun_path)) return std::nullopt;
        out.family = SocketSpec::Family::unix_path;
        out.path = std::string(spec);
        return out;
    }
    if (strip("inet6:")) out.family = SocketSpec::Family::inet6;
    else if (strip("inet:")) out.family = SocketSpec::Family::inet;
    else return std::nullopt;

    const auto at = spec.find('@');
    const std::string_view port = spec.substr(0, at);
    unsigned n = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (ec != std::errc() || p != port.data() + port.size() || n == 0 || n > 65535) return std::nullopt;
    out.port = static_cast<std::uint16_t>(n);
    out.host = at == std::string_view::npos ? "" : std::string(spec.substr(at + 1));
    if (out.host.empty()) out.host = out.family == SocketSpec::Family::inet ? "0.0.0.0" : "::";
    if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']')
        out.host = out.host.substr(1, out.host.size() - 2);
    unsigned char buf[sizeof(in6_addr)];
    const int af = out.family == SocketSpec::Family::inet ? AF_INET : AF_INET6;
    if (inet_pton(af, out.host.c_str(), buf) != 1) return std::nullopt;
    return out;
}

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
