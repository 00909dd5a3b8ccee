#include "milter_socket.hpp"

#include "coexist/accounts.hpp"
#include "coexist/listen.hpp"
#include "coexist/log.hpp"

#include <dirent.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <vector>

namespace coexist::milter {

namespace {

void give_to_owner(const std::string& path, const std::string& owner) {
    if (::geteuid() != 0 || owner.empty()) return;
    const auto found = find_user(owner);
    if (!found) throw SystemError("unknown user '" + owner + "' for " + path, ENOENT);
    if (::chown(path.c_str(), found->uid, static_cast<gid_t>(-1)) != 0)
        throw SystemError("chown " + owner + " " + path, errno);
}

// libmilter answers a command with several small writes in a row (at end of message: one per
// recipient change, one per header, then the verdict). With Nagle on, each write after the first
// waits for Postfix's delayed ACK, about 40 ms: measured, an inet milter managed 44 messages/s
// where a unix socket managed 516 (the relay bench, bench/relay.py). libmilter shows us neither its
// listening nor its accepted sockets, but Linux copies TCP_NODELAY from a listening socket to
// the sockets it accepts, so we find libmilter's listener among our descriptors and set it there.
bool set_nodelay_on_listener(std::uint16_t port) {
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) return false;
    bool done = false;
    while (const dirent* e = ::readdir(dir)) {
        const int fd = std::atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == ::dirfd(dir)) continue;
        int listening = 0;
        socklen_t len = sizeof listening;
        if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
        sockaddr_storage addr{};
        socklen_t alen = sizeof addr;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
        std::uint16_t bound = 0;
        if (addr.ss_family == AF_INET) bound = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
        else if (addr.ss_family == AF_INET6) bound = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
        if (bound != port) continue;
        const int one = 1;
        done = ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0;
    }
    ::closedir(dir);
    return done;
}

}  // namespace

std::string libmilter_connection(const SocketSpec& spec) {
    switch (spec.family) {
        case SocketSpec::Family::unix_path: return "unix:" + spec.path;
        case SocketSpec::Family::inet: return "inet:" + std::to_string(spec.port) + "@" + spec.host;
        case SocketSpec::Family::inet6: return "inet6:" + std::to_string(spec.port) + "@" + spec.host;
    }
    throw std::invalid_argument("bad socket family");
}

void open_milter_socket(const SocketConfig& socket, const std::string& owner) {
    const auto spec = parse_socket_spec(socket.spec);
    if (!spec) throw std::invalid_argument("bad socket specification '" + socket.spec + "'");
    const bool is_unix = spec->family == SocketSpec::Family::unix_path;
    // Only a unix socket file nobody listens on is removed; anything else is an error.
    if (is_unix) remove_stale_unix_socket(spec->path);

    std::string connection = libmilter_connection(*spec);
    if (smfi_setconn(connection.data()) != MI_SUCCESS)
        throw std::invalid_argument("libmilter refused socket '" + connection + "'");
    const mode_t old_umask = ::umask(0177);
    const int rc = smfi_opensocket(false);
    ::umask(old_umask);
    if (rc != MI_SUCCESS) throw std::runtime_error("cannot listen on " + connection);
    if (is_unix) {
        give_to_owner(spec->path, owner);
        apply_socket_permissions(spec->path, socket);
    } else if (!set_nodelay_on_listener(spec->port)) {
        log_warning("cannot set TCP_NODELAY on {}: expect ~40 ms per reply to Postfix", connection);
    }
}

}  // namespace coexist::milter
