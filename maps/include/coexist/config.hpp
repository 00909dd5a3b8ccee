// The coexist.ini configuration (design section 5), loaded strictly: an unknown section or key,
// or a bad value, is a ConfigError naming file, line and key.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace coexist {

inline constexpr const char* kDefaultConfigPath = "/etc/coexist/coexist.ini";

// What happens to a recipient of a managed domain that the map does not know (design 13.6):
// relayed to the source (the default), refused with 550 5.1.1, or sent to the new system at
// local@routing_domain (late in a migration, when Google is the exception).
enum class UnknownRecipient { relay, reject, new_system };

// How a migrated user of a domain reaches the new system (design 11): `rewrite` replaces the
// envelope recipient by the routing address; `transport` keeps it and only chooses the next hop
// (Postfix's transport_maps, through the socketmap table `transport`).
enum class DomainMode { rewrite, transport };

std::string_view to_string(DomainMode m);

struct DomainConfig {
    std::string name;                          // lowercased managed domain, e.g. contoso.com
    std::string routing_domain;                // e.g. o365.contoso.com
    std::vector<std::string> aliases;          // lowercased alias domains, e.g. contoso.net
    std::optional<UnknownRecipient> unknown_recipient;  // overrides [routing] when set
    DomainMode mode = DomainMode::rewrite;
    // transport mode: a Postfix transport(5) result, "transport:nexthop", e.g.
    // smtp:[contoso-com.mail.protection.outlook.com]; empty in rewrite mode.
    std::string new_system_nexthop;
};

// A listening socket and who may connect to it (libmilter syntax: unix:/path, inet:PORT@HOST,
// inet6:PORT@HOST).
struct SocketConfig {
    std::string spec;
    std::string group;          // unix sockets only; empty = leave as created
    mode_t mode = 0660;         // unix sockets only
};

struct MilterConfig {
    SocketConfig socket{"unix:/run/coexist/milter.sock", "postfix", 0660};
    std::string user = "coexist";   // started as root: drop to this user before serving
    unsigned timeout_seconds = 300; // libmilter's I/O timeout with Postfix
    std::string metrics_listen;     // Prometheus metrics, "HOST:PORT" (design 12, 13.6); empty = off
};

struct PolicydConfig {
    SocketConfig policy_socket{"unix:/run/coexist/policy.sock", "postfix", 0660};
    SocketConfig socketmap_socket{"unix:/run/coexist/socketmap.sock", "postfix", 0660};
    std::string user = "coexist";
    unsigned max_connections = 1000;       // concurrent client connections, both listeners
    std::size_t max_request_bytes = 4096;  // policy: one attribute line; socketmap: one netstring
    unsigned max_attributes = 100;         // policy: attributes in one request
    unsigned idle_timeout_seconds = 300;   // a connection with no complete request for this long is closed
    std::string metrics_listen;            // Prometheus metrics, "HOST:PORT" (design 12, 13.6); empty = off
    bool io_uring = true;                  // read and write sockets through io_uring where the kernel allows it
};

// [directory] (design sections 9 and 13.5): the LDAP directory that feeds the map. Absent
// (configured() false) on sites whose map is kept by hand.
struct DirectoryConfig {
    std::string uri;                 // ldap://, ldaps:// or ldapi://; several separated by spaces (tried in turn)
    bool start_tls = false;          // ldap:// only: StartTLS before binding, required to succeed
    std::string bind_dn;             // empty = anonymous
    std::string bind_password_file;  // needed with bind_dn; 0600/0640, never on the command line
    std::string tls_ca_file;         // empty = the system's default CA store
    std::string tls_cert_file;       // client certificate (Google Secure LDAP); with tls_key_file
    std::string tls_key_file;
    std::string base;                // where the people are
    std::string filter = "(objectClass=inetOrgPerson)";
    std::string address_attribute = "mail";                            // the user's primary address
    std::vector<std::string> alias_attributes{"mailAlternateAddress"};  // lowercased names
    std::string migrated_group;      // DN; members are migrated ...
    std::string dual_group;          // ... or dual (dual wins)
    std::string state_attribute;     // instead of the groups: source|migrated|dual
    std::string target_attribute;    // optional explicit routing address
    std::string batch_attribute;     // optional batch name
    unsigned interval_seconds = 60;  // between full syncs when the server offers no RFC 4533
    // max_removals: a sync that would remove more directory-owned users than this changes
    // nothing (without --force). Either an absolute number or a percentage of those users.
    unsigned max_removals = 10;
    bool max_removals_is_percent = true;
    unsigned max_age_seconds = 86400;   // a reject domain tempfails when the last sync is older
    unsigned timeout_seconds = 30;      // network timeout of every LDAP operation
    unsigned page_size = 500;           // RFC 2696 page size (AD's MaxPageSize is 1000)
    std::string metrics_listen;         // sync --follow's metrics, "HOST:PORT" (empty = off)

    bool configured() const { return !uri.empty(); }
    // The removal limit for a map holding `owned` directory-owned users. A percentage allows at
    // least one: removing one user is never a mass removal, even from a ten-user pilot.
    std::size_t removal_limit(std::size_t owned) const {
        if (!max_removals_is_percent) return max_removals;
        if (max_removals == 0) return 0;
        return std::max<std::size_t>(1, owned * max_removals / 100);
    }
};

struct Config {
    std::string source;  // file the config came from (for messages)

    // [map]
    std::string map_path = "/var/lib/coexist";
    // [map] max_size (0.1.0: map_size): address space coexist-map maps for the map, in bytes; the file
    // grows only with the data. Large, so readers never have to re-map; outgrown, it doubles.
    std::size_t map_size = std::size_t{16} << 30;

    // [routing]
    std::string recipient_delimiter = "+";  // any of these characters; empty = no extensions
    bool keep_extension = true;
    UnknownRecipient unknown_recipient = UnknownRecipient::relay;
    unsigned loop_limit = 3;
    // [routing] shadow: the daemons decide, log and count as usual but change nothing (design
    // 13.6): no recipient rewritten or added, no header, no refusal, no deferral.
    bool shadow = false;
    bool log_lookups = false;

    std::vector<DomainConfig> domains;
    MilterConfig milter;
    PolicydConfig policyd;
    DirectoryConfig directory;

    // The managed domain that `domain` (lowercased) is, or is an alias of; nullptr if foreign.
    const DomainConfig* find_domain(std::string_view domain) const;
    UnknownRecipient unknown_policy(const DomainConfig& d) const {
        return d.unknown_recipient.value_or(unknown_recipient);
    }
};

class ConfigError : public std::runtime_error {
public:
    ConfigError(std::string file, int line, std::string key, const std::string& message);
    const std::string& file() const { return file_; }
    int line() const { return line_; }
    const std::string& key() const { return key_; }

private:
    std::string file_;
    int line_;
    std::string key_;
};

// Reads and validates a config file. Throws ConfigError ("FILE:LINE: key 'k': reason").
Config load_config(const std::string& path);
// Same, from text in memory; `name` is used in messages (tests, -n checks).
Config parse_config(std::string_view text, const std::string& name);

std::string_view to_string(UnknownRecipient u);

// A metrics listen address, "HOST:PORT" with a numeric IPv4 HOST or "[IPv6]:PORT"; PORT 1-65535.
// nullopt when `v` is well formed, else why not (for ConfigError).
std::optional<std::string> metrics_listen_error(std::string_view v);

}  // namespace coexist
