// libmilter's listening socket from [milter] socket, socket_group, socket_mode and user:
// created before privileges are dropped, a stale unix socket file removed safely first.
#pragma once

#include <string>

#include "coexist/config.hpp"
#include "coexist/socket_spec.hpp"
#include "coexist/system_error.hpp"

namespace coexist::milter {

// The connection string libmilter's smfi_setconn expects for `spec`: unix:/path,
// inet:PORT@HOST, inet6:PORT@HOST.
std::string libmilter_connection(const SocketSpec& spec);

// Sets up and opens the socket (after smfi_register, before smfi_main). A unix socket is
// created with no access for others, then given to `owner` (when running as root) and the
// configured group, then the configured mode. Throws SystemError / std::invalid_argument.
void open_milter_socket(const SocketConfig& socket, const std::string& owner);

}  // namespace coexist::milter
