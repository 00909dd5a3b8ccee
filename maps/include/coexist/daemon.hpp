// What both daemons need before they serve: socket specs, unix socket ownership and mode, stale
// socket removal, and dropping root. Kept here so coexist-milter and coexist-policyd behave alike.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "coexist/config.hpp"

namespace coexist {

class SystemError : public std::runtime_error {
public:
    SystemError(const std::string& what, int err);
    int error() const { return error_; }

private:
    int error_;
};

// Owns a file descriptor; closes it on destruction.
class FileDescriptor {
public:
    FileDescriptor() = default;
    explicit FileDescriptor(int fd) : fd_(fd) {}
    ~FileDescriptor() { reset(); }
    FileDescriptor(FileDescriptor&& o) noexcept : fd_(o.release()) {}
    FileDescriptor& operator=(FileDescriptor&& o) noexcept {
        if (this != &o) reset(o.release());
        return *this;
    }
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() { int fd = fd_; fd_ = -1; return fd; }
    void reset(int fd = -1);

private:
    int fd_ = -1;
};

// libmilter's syntax: unix:/path (also local:/path or a bare /path), inet:PORT@HOST,
// inet6:PORT@HOST. HOST must be a numeric address (we never resolve names).
struct SocketSpec {
    enum class Family { unix_path, inet, inet6 };
    Family family = Family::unix_path;
    std::string path;   // unix
    std::string host;   // inet/inet6, numeric
    std::uint16_t port = 0;
};
std::optional<SocketSpec> parse_socket_spec(std::string_view spec);

// Removes `path` if it is a unix socket nobody listens on; throws if it is something else
// (never unlinks a regular file by mistake) or if a live server is still listening there.
void remove_stale_unix_socket(const std::string& path);

// chgrp to cfg.group (when non-empty) and chmod to cfg.mode. Throws SystemError.
void apply_socket_permissions(const std::string& path, const SocketConfig& cfg);

// Creates, binds and listens (non-blocking, close-on-exec); unix sockets get their stale file
// removed first and their group/mode applied. Throws SystemError or std::invalid_argument.
FileDescriptor listen_on(const SocketConfig& cfg, int backlog);

// If running as root: switch to `user` (initgroups, setgid, setuid) and verify root cannot be
// regained. No-op when not root. Throws SystemError naming the user.
void drop_privileges(const std::string& user);

}  // namespace coexist
