// Socket addresses in libmilter's syntax, as coexist.ini writes them. The syntax is checked when
// the configuration is read (core); only the daemons listen on them (daemon/listen.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace coexist {

// libmilter's syntax: unix:/path (also local:/path or a bare /path), inet:PORT@HOST,
// inet6:PORT@HOST. HOST must be a numeric address (we never resolve names).
struct SocketSpec {
    enum class Family { unix_path, inet, inet6 };
    Family family = Family::unix_path;
    std::string path;   // unix
    std::string host;   // inet/inet6, numeric
    std::uint16_t port = 0;
};

// nullopt when `spec` is not in that syntax, the port is not 1-65535, the host is not a numeric
// address of the family, or the path does not fit a sockaddr_un.
std::optional<SocketSpec> parse_socket_spec(std::string_view spec);

}  // namespace coexist
