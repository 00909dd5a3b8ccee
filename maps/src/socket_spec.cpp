#include "coexist/socket_spec.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <charconv>

namespace coexist {

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

}  // namespace coexist
