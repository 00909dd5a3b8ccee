// The daemons' listening sockets: unix socket ownership and mode, stale socket removal, and the
// listening socket itself. Kept here so coexist-milter and coexist-policyd behave alike; the map
// tool never listens, so it does not link this library.
#pragma once

#include <string>

#include "coexist/config.hpp"
#include "coexist/socket_spec.hpp"
#include "coexist/system_error.hpp"

namespace coexist {

// Removes `path` if it is a unix socket nobody listens on; throws if it is something else
// (never unlinks a regular file by mistake) or if a live server is still listening there.
void remove_stale_unix_socket(const std::string& path);

// chgrp to cfg.group (when non-empty) and chmod to cfg.mode. Throws SystemError.
void apply_socket_permissions(const std::string& path, const SocketConfig& cfg);

// Creates, binds and listens (non-blocking, close-on-exec); unix sockets get their stale file
// removed first and their group/mode applied. Throws SystemError or std::invalid_argument.
FileDescriptor listen_on(const SocketConfig& cfg, int backlog);

}  // namespace coexist
