// Strict INI loading over inih. A typed table of keys per section (name -> parser) instead of a
// chain of ifs; every error names file, line and key.
#include "coexist/config.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <functional>
#include <fmt/format.h>
#include <ini.h>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "coexist/address.hpp"
#include "coexist/log_text.hpp"
#include "coexist/socket_spec.hpp"

namespace coexist {

// Formatted with fmt: GCC 12 at -O3 reports a false -Wrestrict inside libstdc++'s basic_string
// insert for `"literal" + std::string`.
// The message quotes what the file holds (a value, a key, a section name) and the file's own
// name: loggable() keeps UTF-8 and turns control bytes into '?', so that an escape sequence in
// coexist.ini reaches neither a terminal nor the mail log as one.
ConfigError::ConfigError(std::string file, int line, std::string key, const std::string& message)
    : std::runtime_error(loggable(fmt::format("{}{}: {}{}", file, line > 0 ? fmt::format(":{}", line) : "",
                                              key.empty() ? "" : fmt::format("key '{}': ", key), message),
                                  4096)),
      file_(std::move(file)), line_(line), key_(std::move(key)) {}

std::string_view to_string(DomainMode m) { return m == DomainMode::transport ? "transport" : "rewrite"; }

std::string_view to_string(UnknownRecipient u) {
    switch (u) {
        case UnknownRecipient::relay: return "relay";
        case UnknownRecipient::reject: return "reject";
        case UnknownRecipient::new_system: return "new_system";
    }
    return "?";
}

std::optional<std::string> metrics_listen_error(std::string_view v) {
    if (v.empty()) return std::nullopt;  // off
    const auto bad = [v](std::string_view why) {
        return fmt::format("expected HOST:PORT with a numeric IPv4 host or [IPv6]:PORT, such as "
                           "127.0.0.1:9187 ({}), got '{}'", why, v);
    };
    const auto colon = v.rfind(':');
    if (colon == std::string_view::npos) return bad("no port");
    std::string_view host = v.substr(0, colon);
    const std::string_view port = v.substr(colon + 1);
    unsigned n = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || n < 1 || n > 65535)
        return bad("port from 1 to 65535");
    // The host is numeric, as for the milter and policy sockets: a name would be resolved by
    // the HTTP server's own resolver at start-up, and a typo would listen somewhere unexpected.
    const bool v6 = host.size() > 2 && host.front() == '[' && host.back() == ']';
    if (v6) host = host.substr(1, host.size() - 2);
    unsigned char buf[sizeof(struct in6_addr)];
    const std::string h(host);
    if (::inet_pton(v6 ? AF_INET6 : AF_INET, h.c_str(), buf) != 1) return bad("numeric host");
    return std::nullopt;
}

const DomainConfig* Config::find_domain(std::string_view domain) const {
    for (const auto& d : domains) {
        if (d.name == domain) return &d;
        if (std::find(d.aliases.begin(), d.aliases.end(), domain) != d.aliases.end()) return &d;
    }
    return nullptr;
}

namespace {

// A value parser either stores into the config or returns an error message.
using Setter = std::function<std::optional<std::string>(std::string_view value)>;

std::optional<std::string> parse_bool(std::string_view v, bool& out) {
    const std::string s = lowercase_ascii(v);
    if (s == "yes" || s == "true" || s == "on" || s == "1") { out = true; return std::nullopt; }
    if (s == "no" || s == "false" || s == "off" || s == "0") { out = false; return std::nullopt; }
    return "expected yes or no (or true/false, on/off, 1/0), got '" + std::string(v) + "'";
}

template <typename T>
std::optional<std::string> parse_number(std::string_view v, T& out, T min, T max, int base = 10) {
    T n{};
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n, base);
    if (ec != std::errc() || p != v.data() + v.size() || n < min || n > max)
        return "expected a whole number from " + std::to_string(min) + " to " + std::to_string(max) +
               ", got '" + std::string(v) + "'";
    out = n;
    return std::nullopt;
}

std::optional<std::string> parse_size(std::string_view v, std::size_t& out) {
    std::size_t multiplier = 1;
    if (!v.empty()) {
        switch (v.back()) {
            case 'k': case 'K': multiplier = std::size_t{1} << 10; break;
            case 'm': case 'M': multiplier = std::size_t{1} << 20; break;
            case 'g': case 'G': multiplier = std::size_t{1} << 30; break;
            default: break;
        }
        if (multiplier != 1) v.remove_suffix(1);
    }
    std::size_t n = 0;
    const std::size_t max = (std::size_t{1} << 40) / multiplier;  // 1 TiB is plenty
    if (auto err = parse_number<std::size_t>(v, n, 1, max)) return "expected a size such as 1G or 512M";
    out = n * multiplier;
    if (out < (std::size_t{1} << 20)) return "must be at least 1M";
    return std::nullopt;
}

std::optional<std::string> parse_unknown(std::string_view v, UnknownRecipient& out) {
    if (v == "relay") { out = UnknownRecipient::relay; return std::nullopt; }
    if (v == "reject") { out = UnknownRecipient::reject; return std::nullopt; }
    if (v == "new_system") { out = UnknownRecipient::new_system; return std::nullopt; }
    return fmt::format("expected relay, reject or new_system, got '{}'", v);
}

// A transport(5) result as Postfix's transport_maps expect it: "transport:nexthop" with a
// transport name of letters, digits, '-', '_' or '.', and a next hop of printable ASCII with no
// blanks (it becomes one word of a socketmap reply), e.g. smtp:[host]:25 or relay:host.
// `min_labels`: host_name_problem()'s (address.hpp).
std::optional<std::string> parse_domain_name(std::string_view v, std::string& out, std::size_t min_labels = 2);

// The host of a next hop as smtp(8) and lmtp(8) read it (transport(5), "RESULT FORMAT"):
// host, host:port, [host] or [host]:port, where host is a host name or an IP address (inside
// the brackets: a name looked up without MX, or an address, IPv6 as [ipv6:...]); lmtp's
// unix:/path and inet:host:port too. nullopt when it is none of these ("smtp:[]",
// "smtp::25", an unclosed bracket), which Postfix would defer every message for. The host
// is returned lowercased, without brackets or port, for validate() to compare with the
// managed domains; empty for a unix: path.
std::optional<std::string> nexthop_host(std::string_view nexthop) {
    if (nexthop.rfind("unix:", 0) == 0)
        return nexthop.size() > 6 && nexthop[5] == '/' ? std::optional<std::string>("") : std::nullopt;
    if (nexthop.rfind("inet:", 0) == 0) nexthop.remove_prefix(5);
    std::string_view host = nexthop, port;
    bool ipv6_literal = false;
    if (!nexthop.empty() && nexthop.front() == '[') {
        const auto close = nexthop.find(']');
        if (close == std::string_view::npos || close == 1) return std::nullopt;
        host = nexthop.substr(1, close - 1);
        const std::string_view rest = nexthop.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return std::nullopt;
            port = rest.substr(1);
            if (port.empty()) return std::nullopt;
        }
        if (host.rfind("ipv6:", 0) == 0 || host.rfind("IPv6:", 0) == 0) {
            in6_addr a6{};
            const std::string literal(host.substr(5));
            if (::inet_pton(AF_INET6, literal.c_str(), &a6) != 1) return std::nullopt;
            ipv6_literal = true;
        }
    } else if (const auto c = nexthop.rfind(':'); c != std::string_view::npos) {
        host = nexthop.substr(0, c);
        port = nexthop.substr(c + 1);
        if (port.empty()) return std::nullopt;
    }
    if (!port.empty()) {
        if (port.front() >= '0' && port.front() <= '9') {
            unsigned value = 0;
            const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
            if (ec != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535)
                return std::nullopt;
        } else {
            // A service name (smtp, submission) is a port to Postfix too.
            for (const char ch : port)
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-'))
                    return std::nullopt;
        }
    }
    if (ipv6_literal) return std::string();  // an address, checked above: no domain to compare
    if (host.empty()) return std::nullopt;
    in_addr a4{};
    if (::inet_pton(AF_INET, std::string(host).c_str(), &a4) == 1) return std::string(host);
    std::string domain;
    if (parse_domain_name(host, domain, 1)) return std::nullopt;
    return domain;
}

std::optional<std::string> parse_nexthop(std::string_view v, std::string& out) {
    const auto colon = v.find(':');
    if (colon == std::string_view::npos || colon == 0)
        return fmt::format("expected transport:nexthop, e.g. smtp:[contoso-com.mail.protection.outlook.com], got '{}'", v);
    const std::string_view transport = v.substr(0, colon);
    for (const char c : transport) {
        if (c == '.')  // "mx.example.com:25": a host and port, not transport:nexthop
            return fmt::format("'{}' looks like host:port; write it as transport:nexthop, e.g. smtp:[{}]:{}", v,
                               transport, v.substr(colon + 1));
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return fmt::format("'{}' is not a transport name (master.cf service), in '{}'", transport, v);
    }
    const std::string lower = lowercase_ascii(transport);  // Discard: is no other transport to the admin
    if (lower == "discard" || lower == "error" || lower == "retry" || lower == "local")
        return fmt::format("'{}': the {} transport never reaches the new system", v, transport);
    if (colon + 1 == v.size())
        return fmt::format("'{}' has no next hop: smtp: alone would look up the MX of the managed domain itself, "
                           "the old system", v);
    for (const unsigned char c : v.substr(colon + 1))
        if (c <= 0x20 || c >= 0x7f) return fmt::format("the next hop may not contain blanks or control bytes: '{}'", v);
    if (v.size() > 255) return "longer than 255 bytes";
    if (!nexthop_host(v.substr(colon + 1)))
        return fmt::format("'{}': the next hop is not host, host:port, [host] or [host]:port (a host name or an "
                           "IP address; port 1-65535), e.g. smtp:[contoso-com.mail.protection.outlook.com]", v);
    out = std::string(v);
    return std::nullopt;
}

std::optional<std::string> parse_domain_name(std::string_view v, std::string& out, std::size_t min_labels) {
    // ASCII only, as relay_domains must list it for Postfix to match a U-label recipient
    // (match_hostname() converts the recipient's domain, not the list): the two files then
    // name a domain alike. parse_address() would read a U-label as its A-label.
    auto a = is_ascii(v) ? parse_address(std::string("x@") + std::string(v)) : std::nullopt;
    if (!a) {
        std::string why = fmt::format("not a domain name: '{}'", loggable(v));
        const auto other = std::find_if_not(v.begin(), v.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
        });
        if (!is_ascii(v))
            why += " (an internationalized domain is written as its A-label, xn--...)";
        else if (other != v.end())
            why += fmt::format(": it holds '{}' (letters, digits, hyphens and dots only)", printable(std::string_view(&*other, 1)));
        return why;
    }
    if (auto why = host_name_problem(a->domain, min_labels))
        return fmt::format("not a domain name: '{}': {}", loggable(v), *why);
    out = a->domain;
    return std::nullopt;
}

std::optional<std::string> parse_socket(std::string_view v, std::string& out) {
    if (!parse_socket_spec(v))
        return "expected unix:/path, inet:PORT@HOST or inet6:PORT@HOST with a numeric HOST, got '" +
               std::string(v) + "'";
    out = std::string(v);
    return std::nullopt;
}

std::optional<std::string> parse_metrics_listen(std::string_view v, std::string& out) {
    if (auto e = metrics_listen_error(v)) return e;
    out = std::string(v);
    return std::nullopt;
}

std::optional<std::string> parse_mode(std::string_view v, mode_t& out) {
    unsigned m = 0;
    if (parse_number<unsigned>(v, m, 0, 0777, 8)) return "expected an octal mode such as 0660";
    out = static_cast<mode_t>(m);
    return std::nullopt;
}

std::optional<std::string> parse_name(std::string_view v, std::string& out) {
    // User and group names: the portable set, so a typo can't smuggle in anything odd.
    const bool ok = !v.empty() && v.size() <= 32 && std::all_of(v.begin(), v.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
    });
    if (!ok) return "not a user or group name: '" + std::string(v) + "'";
    out = std::string(v);
    return std::nullopt;
}

std::optional<std::string> parse_delimiter(std::string_view v, std::string& out) {
    for (unsigned char c : v)
        if (c <= 0x20 || c >= 0x7f || c == '@' || c == '"' || c == '<' || c == '>')
            return "recipient_delimiter takes printable characters other than @ \" < >";
    out = std::string(v);
    return std::nullopt;
}

// An LDAP attribute description's name (RFC 4512 section 1.4 keystring, or a numeric OID).
bool is_attribute_name(std::string_view v) {
    if (v.empty() || v.size() > 128) return false;
    return std::all_of(v.begin(), v.end(), [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.';
    });
}

std::vector<std::string> split_list(std::string_view v) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : v) {
        if (c == ',' || c == ' ' || c == '\t') {
            if (!cur.empty()) out.push_back(std::move(cur));
            cur.clear();
        } else {
            cur.push_back(c);
        }
    }
    if (!cur.empty()) out.push_back(std::move(cur));
    return out;
}

struct ParseState {
    Config config;
    std::string file;
    int line = 0;
    std::optional<ConfigError> error;
    std::set<std::string> seen;     // "section\nkey" given already
    std::map<std::string, int> key_lines;  // "domain\nkey" -> line it was set on (for errors)
    // Each [domain NAME] once: domain names are case-insensitive, so [domain Contoso.COM] after
    // [domain contoso.com] is the same domain given twice, not an override.
    int header_line = 0;          // line of the last "[section]" read (read_line sets it)
    int keyed_header_line = 0;    // header_line when on_key last ran
    std::map<std::string, std::pair<int, std::string>> domain_headers;  // name -> line, as written
    std::map<std::string, int> section_headers;  // [map], [routing], ... -> line of its header

    void fail(const std::string& key, const std::string& msg) {
        if (!error) error.emplace(file, line, key, msg);
    }
};

using KeyTable = std::map<std::string, Setter, std::less<>>;

KeyTable keys_for(ParseState& st, std::string_view section, DomainConfig* domain) {
    Config& c = st.config;
    if (section == "map")
        return {
            {"path", [&c](auto v) -> std::optional<std::string> {
                 if (v.empty() || v.front() != '/') return "expected an absolute path";
                 c.map_path = std::string(v);
                 return std::nullopt;
             }},
            {"max_size", [&c](auto v) { return parse_size(v, c.map_size); }},
            {"map_size", [&c](auto v) { return parse_size(v, c.map_size); }},  // 0.1.0's name, deprecated
        };
    if (section == "routing")
        return {
            {"recipient_delimiter", [&c](auto v) { return parse_delimiter(v, c.recipient_delimiter); }},
            {"keep_extension", [&c](auto v) { return parse_bool(v, c.keep_extension); }},
            {"unknown_recipient", [&c](auto v) { return parse_unknown(v, c.unknown_recipient); }},
            {"loop_limit", [&c](auto v) { return parse_number<unsigned>(v, c.loop_limit, 1, 100); }},
            {"shadow", [&c](auto v) { return parse_bool(v, c.shadow); }},
            {"log_lookups", [&c](auto v) { return parse_bool(v, c.log_lookups); }},
        };
    if (section == "milter") {
        auto& m = c.milter;
        KeyTable t;
        // The milter's socket keys are socket/socket_group/socket_mode.
        t.insert({"socket", [&m](auto v) { return parse_socket(v, m.socket.spec); }});
        t.insert({"socket_group", [&m](auto v) { return parse_name(v, m.socket.group); }});
        t.insert({"socket_mode", [&m](auto v) { return parse_mode(v, m.socket.mode); }});
        t.insert({"user", [&m](auto v) { return parse_name(v, m.user); }});
        t.insert({"timeout", [&m](auto v) { return parse_number<unsigned>(v, m.timeout_seconds, 1, 3600); }});
        t.insert({"metrics_listen", [&m](auto v) { return parse_metrics_listen(v, m.metrics_listen); }});
        return t;
    }
    if (section == "policyd") {
        auto& p = c.policyd;
        // socket_group/socket_mode apply to both listeners.
        return {
            {"policy_socket", [&p](auto v) { return parse_socket(v, p.policy_socket.spec); }},
            {"socketmap_socket", [&p](auto v) { return parse_socket(v, p.socketmap_socket.spec); }},
            {"socket_group", [&p](auto v) {
                 auto e = parse_name(v, p.policy_socket.group);
                 p.socketmap_socket.group = p.policy_socket.group;
                 return e;
             }},
            {"socket_mode", [&p](auto v) {
                 auto e = parse_mode(v, p.policy_socket.mode);
                 p.socketmap_socket.mode = p.policy_socket.mode;
                 return e;
             }},
            {"user", [&p](auto v) { return parse_name(v, p.user); }},
            {"max_connections", [&p](auto v) { return parse_number<unsigned>(v, p.max_connections, 1, 100000); }},
            {"max_request_bytes", [&p](auto v) { return parse_number<std::size_t>(v, p.max_request_bytes, 256, 1 << 20); }},
            {"max_attributes", [&p](auto v) { return parse_number<unsigned>(v, p.max_attributes, 1, 10000); }},
            {"idle_timeout", [&p](auto v) { return parse_number<unsigned>(v, p.idle_timeout_seconds, 1, 86400); }},
            {"metrics_listen", [&p](auto v) { return parse_metrics_listen(v, p.metrics_listen); }},
            {"io_uring", [&p](auto v) { return parse_bool(v, p.io_uring); }},
        };
    }
    if (section == "directory") {
        auto& d = c.directory;
        const auto text = [](std::string& out, bool required = false) {
            return [&out, required](std::string_view v) -> std::optional<std::string> {
                if (required && v.empty()) return "must not be empty";
                if (v.size() > 4096) return "longer than 4096 bytes";
                for (unsigned char ch : v)
                    if (ch < 0x20 || ch == 0x7f) return "control characters are not allowed";
                out = std::string(v);
                return std::nullopt;
            };
        };
        const auto path = [](std::string& out) {
            return [&out](std::string_view v) -> std::optional<std::string> {
                if (!v.empty() && v.front() != '/') return "expected an absolute path";
                out = std::string(v);
                return std::nullopt;
            };
        };
        const auto attribute = [](std::string& out) {
            return [&out](std::string_view v) -> std::optional<std::string> {
                if (!v.empty() && !is_attribute_name(v)) return fmt::format("not an LDAP attribute name: '{}'", v);
                out = lowercase_ascii(v);
                return std::nullopt;
            };
        };
        return {
            {"uri", [&d](auto v) -> std::optional<std::string> {
                 for (const auto& u : split_list(v)) {
                     const std::string lower = lowercase_ascii(u);
                     if (lower.rfind("ldap://", 0) != 0 && lower.rfind("ldaps://", 0) != 0 && lower.rfind("ldapi://", 0) != 0)
                         return fmt::format("expected ldap://, ldaps:// or ldapi:// URIs, got '{}'", u);
                 }
                 if (split_list(v).empty()) return "must not be empty";
                 d.uri = std::string(v);
                 return std::nullopt;
             }},
            {"start_tls", [&d](auto v) { return parse_bool(v, d.start_tls); }},
            {"bind_dn", text(d.bind_dn)},
            {"bind_password_file", path(d.bind_password_file)},
            {"tls_ca_file", path(d.tls_ca_file)},
            {"tls_cert_file", path(d.tls_cert_file)},
            {"tls_key_file", path(d.tls_key_file)},
            {"base", text(d.base, true)},
            {"filter", [&d](auto v) -> std::optional<std::string> {
                 if (v.size() < 3 || v.front() != '(' || v.back() != ')') return "expected an LDAP filter in parentheses";
                 d.filter = std::string(v);
                 return std::nullopt;
             }},
            {"address_attribute", [&d, attribute](auto v) -> std::optional<std::string> {
                 if (v.empty()) return "must not be empty";
                 return attribute(d.address_attribute)(v);
             }},
            {"alias_attributes", [&d](auto v) -> std::optional<std::string> {
                 d.alias_attributes.clear();
                 for (const auto& a : split_list(v)) {
                     if (!is_attribute_name(a)) return fmt::format("not an LDAP attribute name: '{}'", a);
                     d.alias_attributes.push_back(lowercase_ascii(a));
                 }
                 return std::nullopt;
             }},
            {"migrated_group", text(d.migrated_group)},
            {"dual_group", text(d.dual_group)},
            {"state_attribute", attribute(d.state_attribute)},
            {"target_attribute", attribute(d.target_attribute)},
            {"batch_attribute", attribute(d.batch_attribute)},
            {"interval", [&d](auto v) { return parse_number<unsigned>(v, d.interval_seconds, 5, 86400); }},
            {"max_removals", [&d](auto v) -> std::optional<std::string> {
                 if (!v.empty() && v.back() == '%') {
                     d.max_removals_is_percent = true;
                     if (parse_number<unsigned>(v.substr(0, v.size() - 1), d.max_removals, 0, 100))
                         return fmt::format("expected a number of users or a percentage from 0% to 100%, got '{}'", v);
                     return std::nullopt;
                 }
                 d.max_removals_is_percent = false;
                 return parse_number<unsigned>(v, d.max_removals, 0, 100000000);
             }},
            {"max_age", [&d](auto v) { return parse_number<unsigned>(v, d.max_age_seconds, 60, 365 * 86400); }},
            {"timeout", [&d](auto v) { return parse_number<unsigned>(v, d.timeout_seconds, 1, 3600); }},
            {"page_size", [&d](auto v) { return parse_number<unsigned>(v, d.page_size, 1, 100000); }},
            {"metrics_listen", [&d](auto v) { return parse_metrics_listen(v, d.metrics_listen); }},
        };
    }
    if (domain)
        return {
            {"routing_domain", [domain](auto v) { return parse_domain_name(v, domain->routing_domain); }},
            {"aliases", [domain](auto v) -> std::optional<std::string> {
                 domain->aliases.clear();
                 for (const auto& a : split_list(v)) {
                     std::string d;
                     if (auto e = parse_domain_name(a, d)) return e;
                     domain->aliases.push_back(d);
                 }
                 return std::nullopt;
             }},
            {"unknown_recipient", [domain](auto v) {
                 UnknownRecipient u{};
                 auto e = parse_unknown(v, u);
                 if (!e) domain->unknown_recipient = u;
                 return e;
             }},
            {"mode", [domain](auto v) -> std::optional<std::string> {
                 if (v == "rewrite") domain->mode = DomainMode::rewrite;
                 else if (v == "transport") domain->mode = DomainMode::transport;
                 else return fmt::format("expected rewrite or transport, got '{}'", v);
                 return std::nullopt;
             }},
            {"new_system_nexthop", [domain](auto v) { return parse_nexthop(v, domain->new_system_nexthop); }},
        };
    return {};
}

// The sections with a fixed name; every other must be [domain NAME].
bool fixed_section(std::string_view section) {
    return section == "map" || section == "routing" || section == "milter" || section == "policyd" ||
           section == "directory";
}

// The error for a section that is neither fixed nor a [domain NAME] with a valid NAME; an
// internationalized domain written in Unicode gets the form it must be given in.
std::string unknown_section(std::string_view section) {
    std::string text = "unknown section [" + std::string(section) + "]";
    constexpr std::string_view prefix = "domain ";
    if (section.substr(0, prefix.size()) == prefix && !is_ascii(section))
        text += ": a domain is written in ASCII, an internationalized one as its A-label (xn--...), as in "
                "relay_domains";
    return text;
}

DomainConfig* domain_section(ParseState& st, std::string_view section) {
    constexpr std::string_view prefix = "domain ";
    if (section.substr(0, prefix.size()) != prefix) return nullptr;
    std::string name;
    if (parse_domain_name(section.substr(prefix.size()), name)) return nullptr;
    for (auto& d : st.config.domains)
        if (d.name == name) return &d;
    st.config.domains.push_back(DomainConfig{name, {}, {}, {}, DomainMode::rewrite, {}});
    st.key_lines[name + "\n"] = st.line;  // the domain's first key: where a missing key is reported
    return &st.config.domains.back();
}

int on_key(void* user, const char* section, const char* name, const char* value) {
    auto& st = *static_cast<ParseState*>(user);
    try {
        std::string_view sec(section);
        DomainConfig* domain = nullptr;
        if (!fixed_section(sec)) {
            domain = domain_section(st, sec);
            if (!domain) {
                // On the header's line, as for an empty section (validate_empty_sections), not on
                // the line of its first key.
                if (!st.error) st.error.emplace(st.file, st.header_line, "", unknown_section(sec));
                return 0;
            }
        }
        if (domain && st.header_line != st.keyed_header_line &&
            !st.domain_headers.emplace(domain->name, std::pair{st.header_line, std::string(sec)}).second) {
            const auto& [first_line, first_spelling] = st.domain_headers.at(domain->name);
            if (!st.error)
                st.error.emplace(st.file, st.header_line, "",
                                 fmt::format("[{}] repeats [{}] of line {} (domain names are case-insensitive)",
                                             sec, first_spelling, first_line));
            return 0;
        }
        // [routing] twice: each key once still, but the file reads as two settings where there
        // is one, and a second [milter] pasted below the first is a mistake.
        if (!domain && st.header_line != st.keyed_header_line &&
            !st.section_headers.emplace(std::string(sec), st.header_line).second) {
            if (!st.error)
                st.error.emplace(st.file, st.header_line, "",
                                 fmt::format("[{}] repeats [{}] of line {}", sec, sec, st.section_headers.at(std::string(sec))));
            return 0;
        }
        st.keyed_header_line = st.header_line;
        // [map] map_size is max_size's old name: the two are one key, given twice if both are.
        const bool old_size_name = sec == "map" && std::string_view(name) == "map_size";
        const std::string seen_key = std::string(sec) + "\n" + (old_size_name ? "max_size" : name);
        if (domain) st.key_lines[domain->name + "\n" + name] = st.line;
        // fmt, not `"[" + std::string`: GCC 12 -O3 gives a false -Wrestrict for that form.
        else st.key_lines[fmt::format("[{}]\n{}", sec, name)] = st.line;  // "[milter]\nsocket"
        if (!st.seen.insert(seen_key).second) {
            st.fail(name, sec == "map" && (old_size_name || std::string_view(name) == "max_size")
                              ? std::string("given twice in [map] (map_size is max_size's old name)")
                              : fmt::format("given twice in [{}]", sec));
            return 0;
        }
        auto table = keys_for(st, sec, domain);
        auto it = table.find(std::string_view(name));
        if (it == table.end()) {
            st.fail(name, "unknown key in [" + std::string(sec) + "]");
            return 0;
        }
        if (auto err = it->second(value)) {
            st.fail(name, *err);
            return 0;
        }
        return 1;
    } catch (const std::exception& e) {
        // Never let an exception unwind through inih's C frames.
        st.fail(name, e.what());
        return 0;
    }
}

// inih reads line by line through this, which lets us know the line of every key.
struct LineSource {
    std::string_view text;
    std::size_t pos = 0;
    int* line;
    int* header_line;  // set to the line of every "[section]" line
    // Every "[section]" line: its line and name. inih tells on_key only of sections that hold
    // a key, so an empty one (a misspelt [milterr], a [domain] left without its keys) is
    // checked from here.
    std::vector<std::pair<int, std::string>>* headers;
    // A line longer than inih's buffer (INI_MAX_LINE, fixed when libinih was built): its line
    // number and the longest line the buffer holds, in bytes. Reading stops there.
    int* overlong_line;
    std::size_t* longest_line;
};

char* read_line(char* buf, int size, void* stream) {
    auto& src = *static_cast<LineSource*>(stream);
    if (src.pos >= src.text.size() || size < 2) return nullptr;
    auto end = src.text.find('\n', src.pos);
    std::size_t len = (end == std::string_view::npos ? src.text.size() : end + 1) - src.pos;
    // inih's buffer is INI_MAX_LINE bytes, the newline and the terminating NUL included. A
    // longer line handed over in pieces would have its last piece read as a line of its own: a
    // long comment ending in "unknown_recipient = reject" would set it. So reading stops there,
    // and parse_with() refuses the file naming the line.
    if (len > static_cast<std::size_t>(size - 1)) {
        *src.overlong_line = *src.line + 1;
        *src.longest_line = static_cast<std::size_t>(size - 2);
        return nullptr;
    }
    std::memcpy(buf, src.text.data() + src.pos, len);
    buf[len] = '\0';
    if (len > 0 && buf[len - 1] == '\n') ++*src.line;
    else if (src.pos + len == src.text.size()) ++*src.line;
    const std::string_view read(buf, len);
    const auto first = read.find_first_not_of(" \t");
    if (first != std::string_view::npos && read[first] == '[') {
        *src.header_line = *src.line;
        // The name as inih takes it: up to the first ']' (a line without one is inih's error).
        const auto close = read.find(']', first);
        if (close != std::string_view::npos)
            src.headers->emplace_back(*src.line, std::string(read.substr(first + 1, close - first - 1)));
    }
    src.pos += len;
    return buf;
}

void validate_directory(ParseState& st) {
    const DirectoryConfig& d = st.config.directory;
    const bool any = st.seen.lower_bound("directory\n") != st.seen.end() &&
                     st.seen.lower_bound("directory\n")->rfind("directory\n", 0) == 0;
    if (!any) return;
    const auto missing = [&](const char* key) {
        throw ConfigError(st.file, st.line, key, "missing in [directory]");
    };
    if (d.uri.empty()) missing("uri");
    if (d.base.empty()) missing("base");
    if (!d.bind_dn.empty() && d.bind_password_file.empty()) missing("bind_password_file");
    if (d.tls_cert_file.empty() != d.tls_key_file.empty())
        throw ConfigError(st.file, st.line, d.tls_cert_file.empty() ? "tls_cert_file" : "tls_key_file",
                          "tls_cert_file and tls_key_file go together");
    if (!d.state_attribute.empty() && (!d.migrated_group.empty() || !d.dual_group.empty()))
        throw ConfigError(st.file, st.line, "state_attribute",
                          "give either state_attribute or migrated_group/dual_group, not both");
}

// Sections that hold no key. A fixed one is fine (all defaults) except [directory], which has
// no default source: an empty one would let `coexist-map sync` say there is no [directory]
// section in a file that has one. Any other is an error, as it would be with a key in it; an
// empty repeat of a [domain] is one as much as a repeat with keys (on_key).
void validate_empty_sections(ParseState& st, const std::vector<std::pair<int, std::string>>& headers) {
    const bool directory_keys = st.seen.lower_bound("directory\n") != st.seen.end() &&
                                st.seen.lower_bound("directory\n")->rfind("directory\n", 0) == 0;
    for (const auto& [line, section] : headers) {
        if (section == "directory" && !directory_keys)
            throw ConfigError(st.file, line, "uri", "missing in [directory] (an empty section: give uri and base, "
                                                    "or remove it)");
        if (fixed_section(section)) {
            // An empty repeat of a section given with keys, before or after it; or of an empty one.
            const auto first = st.section_headers.emplace(section, line).first;
            if (first->second != line)
                throw ConfigError(st.file, std::max(line, first->second), "",
                                  fmt::format("[{}] repeats [{}] of line {}", section, section,
                                              std::min(line, first->second)));
            continue;
        }
        constexpr std::string_view prefix = "domain ";
        std::string name;
        if (std::string_view(section).substr(0, prefix.size()) != prefix ||
            parse_domain_name(std::string_view(section).substr(prefix.size()), name))
            throw ConfigError(st.file, line, "", unknown_section(section));
        if (std::none_of(st.config.domains.begin(), st.config.domains.end(),
                         [&](const DomainConfig& d) { return d.name == name; }))
            throw ConfigError(st.file, line, "routing_domain", "missing in [" + section + "]");
        const auto keyed = st.domain_headers.find(name);
        if (keyed != st.domain_headers.end() && keyed->second.first != line)
            throw ConfigError(st.file, line, "",
                              fmt::format("[{}] repeats [{}] of line {} (domain names are case-insensitive)",
                                          section, keyed->second.second, keyed->second.first));
    }
}

// Whether two listeners of this host would be one socket: the same unix path, or the same
// port of one family on the same address or with either on the wildcard address. The second
// daemon (or listener) to start would fail to bind, after every check had said the
// configuration is fine. Different families are left to bind: the daemons listen on inet6
// with IPV6_V6ONLY.
bool same_listener(const SocketSpec& a, const SocketSpec& b) {
    if (a.family != b.family) return false;
    if (a.family == SocketSpec::Family::unix_path) return a.path == b.path;
    const auto wildcard = [](const SocketSpec& s) { return s.host == "0.0.0.0" || s.host == "::"; };
    return a.port == b.port && (a.host == b.host || wildcard(a) || wildcard(b));
}

void validate_listeners(ParseState& st) {
    const Config& c = st.config;
    struct Listener {
        const char* section;
        const char* key;
        const std::string& spec;
    };
    const Listener listeners[] = {{"milter", "socket", c.milter.socket.spec},
                                  {"policyd", "policy_socket", c.policyd.policy_socket.spec},
                                  {"policyd", "socketmap_socket", c.policyd.socketmap_socket.spec}};
    for (std::size_t i = 0; i < std::size(listeners); ++i)
        for (std::size_t j = i + 1; j < std::size(listeners); ++j) {
            const auto a = parse_socket_spec(listeners[i].spec), b = parse_socket_spec(listeners[j].spec);
            if (!a || !b || !same_listener(*a, *b)) continue;
            // Reported at the later of the two keys given in the file (a default has no line).
            int line = 0;
            const char* key = listeners[j].key;
            for (const auto* l : {&listeners[i], &listeners[j]}) {
                const auto it = st.key_lines.find(fmt::format("[{}]\n{}", l->section, l->key));
                if (it != st.key_lines.end() && it->second >= line) {
                    line = it->second;
                    key = l->key;
                }
            }
            throw ConfigError(st.file, line, key,
                              fmt::format("[{}] {} = {} and [{}] {} = {} are the same socket: give each its own",
                                          listeners[i].section, listeners[i].key, listeners[i].spec,
                                          listeners[j].section, listeners[j].key, listeners[j].spec));
        }
}

void validate(ParseState& st) {
    validate_directory(st);
    validate_listeners(st);
    Config& c = st.config;
    if (c.domains.empty()) throw ConfigError(st.file, st.line, "", "no [domain NAME] section: nothing to manage");
    std::set<std::string> names;
    for (const auto& d : c.domains) names.insert(d.name);
    for (const auto& d : c.domains) {
        auto line_of = [&](const std::string& key) {
            auto it = st.key_lines.find(d.name + "\n" + key);
            return it != st.key_lines.end() ? it->second : st.key_lines[d.name + "\n"];
        };
        if (d.routing_domain.empty())
            throw ConfigError(st.file, line_of(""), "routing_domain", "missing in [domain " + d.name + "]");
        if (names.count(d.routing_domain) || c.find_domain(d.routing_domain))
            throw ConfigError(st.file, line_of("routing_domain"), "routing_domain",
                              "'" + d.routing_domain + "' is itself managed: mail would loop");
        if (d.mode == DomainMode::transport && d.new_system_nexthop.empty())
            throw ConfigError(st.file, line_of("mode"), "new_system_nexthop",
                              "mode = transport in [domain " + d.name + "] needs new_system_nexthop (where migrated "
                              "users' mail goes, e.g. smtp:[contoso-com.mail.protection.outlook.com])");
        if (d.mode == DomainMode::transport) {
            // A managed domain (or alias) as the next hop is the old system (its MX), or its
            // web server ([contoso.net]): never the new system.
            const auto host = nexthop_host(d.new_system_nexthop.substr(d.new_system_nexthop.find(':') + 1));
            if (host && !host->empty() && c.find_domain(*host))
                throw ConfigError(st.file, line_of("new_system_nexthop"), "new_system_nexthop",
                                  fmt::format("'{}' is a managed domain: its MX is the old system (give the new "
                                              "system's host, e.g. smtp:[contoso-com.mail.protection.outlook.com])",
                                              *host));
        }
        if (d.mode != DomainMode::transport && !d.new_system_nexthop.empty())
            throw ConfigError(st.file, line_of("new_system_nexthop"), "new_system_nexthop",
                              "only used with mode = transport in [domain " + d.name + "]");
        for (const auto& a : d.aliases) {
            const DomainConfig* owner = nullptr;
            for (const auto& other : c.domains)
                if (other.name == a || (&other != &d && std::find(other.aliases.begin(), other.aliases.end(), a) != other.aliases.end()))
                    owner = &other;
            if (owner) throw ConfigError(st.file, line_of("aliases"), "aliases", "'" + a + "' is already managed by [domain " + owner->name + "]");
        }
    }
}

Config parse_with(LineSource src, ParseState& st) {
    const int rc = ini_parse_stream(read_line, &src, on_key, &st);
    if (st.error) throw *st.error;
    if (*src.overlong_line)
        throw ConfigError(st.file, *src.overlong_line, "",
                          fmt::format("line longer than {} bytes, the most coexist.ini's reader (inih) takes: "
                                      "shorten it (a comment, or a list of domains)",
                                      *src.longest_line));
    if (rc > 0) throw ConfigError(st.file, rc, "", "syntax error (expected [section] or key = value)");
    if (rc < 0) throw ConfigError(st.file, 0, "", "cannot read the file");
    validate_empty_sections(st, *src.headers);
    validate(st);
    return std::move(st.config);
}

}  // namespace

Config parse_config(std::string_view text, const std::string& name) {
    ParseState st;
    st.file = name;
    st.config.source = name;
    std::vector<std::pair<int, std::string>> headers;
    int overlong_line = 0;
    std::size_t longest_line = 0;
    return parse_with(LineSource{text, 0, &st.line, &st.header_line, &headers, &overlong_line, &longest_line}, st);
}

Config load_config(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "re");
    if (!f) throw ConfigError(path, 0, "", std::string("cannot open: ") + std::strerror(errno));
    std::string text;
    char buf[8192];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        text.append(buf, n);
        if (text.size() > (1u << 20)) {
            std::fclose(f);
            throw ConfigError(path, 0, "", "larger than 1 MiB: not a configuration file");
        }
    }
    // fopen() opens a directory (-c /etc/coexist); reading it fails with EISDIR.
    const int read_errno = std::ferror(f) ? errno : 0;
    std::fclose(f);
    if (read_errno == EISDIR) throw ConfigError(path, 0, "", "is a directory, not a configuration file");
    if (read_errno) throw ConfigError(path, 0, "", std::string("cannot read: ") + std::strerror(read_errno));
    return parse_config(text, path);
}

}  // namespace coexist
