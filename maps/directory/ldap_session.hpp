// One authenticated connection to the directory (design section 9, 13.5): connect, TLS
// (ldaps:// or StartTLS, CA and client certificate from the config), simple bind with the
// password read from its file, and paged searches (RFC 2696). RAII over libldap's LDAP*.
#pragma once

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "distinguished_name.hpp"
#include "coexist/config.hpp"

typedef struct ldap LDAP;
typedef struct ldapmsg LDAPMessage;

namespace coexist::directory {

// Anything that stops us from reading the directory. `transient()`: the server is down,
// unreachable, busy or timed out, worth retrying with backoff; otherwise (bad credentials, no
// such base, a bad filter, an unreadable password file) retrying cannot help and the admin must act.
class DirectoryError : public std::runtime_error {
public:
    DirectoryError(const std::string& what, bool transient) : std::runtime_error(what), transient_(transient) {}
    bool transient() const { return transient_; }

private:
    bool transient_;
};

// One entry of a search result. Attribute names are lowercased and stripped of options
// (";binary", ";range=..."); values are raw bytes as the server sent them.
struct Entry {
    std::string dn;
    std::map<std::string, std::vector<std::string>, std::less<>> attributes;

    // The values of `name` (lowercase), or nullptr when the entry has none.
    const std::vector<std::string>* values(std::string_view name) const;
};

// Reads the bind password: the file's first line, without its line ending. Refuses (permanent
// DirectoryError naming the file and the fix) a file that is not a regular file, is readable or
// writable by others, writable by its group, or owned by another user than root or the caller;
// also an empty password (libldap would bind anonymously without saying so).
std::string read_bind_password(const std::string& path);


class LdapSession {
public:
    // Connects to the first URI of config.uri that answers, sets LDAPv3, the network and
    // operation timeouts (config.timeout_seconds), TLS options, StartTLS when config.start_tls,
    // and binds (anonymously when bind_dn is empty). Throws DirectoryError.
    explicit LdapSession(const DirectoryConfig& config);
    ~LdapSession();
    LdapSession(const LdapSession&) = delete;
    LdapSession& operator=(const LdapSession&) = delete;

    // The URI this session is connected to (for audit entries and logs).
    const std::string& uri() const { return uri_; }
    LDAP* handle() const { return ld_; }

    // Whether the root DSE lists `oid` in supportedControl (e.g. kSyncRequestOid). Throws
    // DirectoryError on a transport error; false when the root DSE is not readable.
    bool supports_control(std::string_view oid);

    // A search with the Simple Paged Results control (RFC 2696, config.page_size entries a page),
    // `visit` called for each entry in the order the server sends them; search references are
    // skipped. scope: LDAP_SCOPE_BASE, _ONELEVEL or _SUBTREE. A server that does not support
    // paging (the control not critical) just returns everything in one page. Throws
    // DirectoryError (noSuchObject on the base is permanent, with the base in the message).
    void search_paged(std::string_view base, int scope, std::string_view filter,
                      const std::vector<std::string>& attributes, const std::function<void(Entry&&)>& visit);

    // The URLs of the continuation references (RFC 4511 4.5.3) search_paged() met since the last
    // call, at most kMaxSkippedReferences: the entries there are on another server, which coexist
    // does not follow (its account, TLS and limits are this one's). Empties the list.
    std::vector<std::string> take_skipped_references();
    static constexpr std::size_t kMaxSkippedReferences = 20;

private:
    const DirectoryConfig& config_;
    LDAP* ld_ = nullptr;
    std::string uri_;
    std::vector<std::string> skipped_references_;
};

// The URLs of a SearchResultReference message; empty when it cannot be parsed.
std::vector<std::string> reference_urls(LDAP* ld, LDAPMessage* message);

// Builds an Entry from a SearchResultEntry message (for searches run on handle() directly, such
// as the RFC 4533 follow). Throws DirectoryError when the message cannot be parsed.
Entry entry_from_message(LDAP* ld, LDAPMessage* message);

// The error text of an LDAP result code plus the server's diagnostic message when there is one.
std::string ldap_error_text(int code, std::string_view diagnostic = {});
// Whether an LDAP result code is worth retrying (server down, busy, unavailable, timeout, connect error).
bool is_transient(int code);

}  // namespace coexist::directory
