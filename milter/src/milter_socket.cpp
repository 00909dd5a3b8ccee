#include "milter_socket.hpp"

#include <libmilter/mfapi.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <vector>

namespace coexist::milter {

namespace {

void give_to_owner(const std::string& path, const std::string& owner) {
    if (::geteuid() != 0 || owner.empty()) return;
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* found = nullptr;
    const int rc = ::getpwnam_r(owner.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc != 0 || !found) throw SystemError("unknown user '" + owner + "' for " + path, rc ? rc : ENOENT);
    if (::chown(path.c_str(), found->pw_uid, static_cast<gid_t>(-1)) != 0)
        throw SystemError("chown " + owner + " " + path, errno);
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
    }
}

}  // namespace coexist::milter
