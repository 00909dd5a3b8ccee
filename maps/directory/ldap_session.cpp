// One authenticated connection to the directory over libldap (see ldap_session.hpp). Every libldap
// allocation is owned by a small RAII type below the moment it is returned, so an exception from
// a visitor or a failed page never leaks a message, a control or the connection.
#include "ldap_session.hpp"

#include <fcntl.h>
#include <ldap.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include <fmt/format.h>

#include "coexist/system_error.hpp"

namespace coexist::directory {

namespace {

// ---- RAII over libldap ---------------------------------------------------------------------

struct Unbind {
    void operator()(LDAP* ld) const { ldap_unbind_ext_s(ld, nullptr, nullptr); }
};
using LdapHandle = std::unique_ptr<LDAP, Unbind>;

struct MsgFree {
    void operator()(LDAPMessage* m) const { ldap_msgfree(m); }
};
using Message = std::unique_ptr<LDAPMessage, MsgFree>;

struct ControlFree {
    void operator()(LDAPControl* c) const { ldap_control_free(c); }
};
using Control = std::unique_ptr<LDAPControl, ControlFree>;

struct ControlsFree {
    void operator()(LDAPControl** c) const { ldap_controls_free(c); }
};
using Controls = std::unique_ptr<LDAPControl*, ControlsFree>;

struct BerFree {
    void operator()(BerElement* b) const { ber_free(b, 0); }
};
using Ber = std::unique_ptr<BerElement, BerFree>;

struct ValuesFree {
    void operator()(berval** v) const { ldap_value_free_len(v); }
};
using Values = std::unique_ptr<berval*, ValuesFree>;

struct MemFree {
    void operator()(char* p) const { ldap_memfree(p); }
};
using LdapString = std::unique_ptr<char, MemFree>;

// A berval whose bytes libldap allocated (the paged-results cookie); ber_memfree, not free().
struct BervalBytes {
    berval value{0, nullptr};
    BervalBytes() = default;
    BervalBytes(const BervalBytes&) = delete;
    BervalBytes& operator=(const BervalBytes&) = delete;
    ~BervalBytes() { reset(); }
    void reset() {
        if (value.bv_val != nullptr) ber_memfree(value.bv_val);
        value = berval{0, nullptr};
    }
};

// An asynchronous search still running on the server: abandoned when we leave early (a visitor
// threw, a timeout), so the server stops sending and libldap drops what it queued for it.
class PendingSearch {
public:
    PendingSearch(LDAP* ld, int msgid) : ld_(ld), msgid_(msgid) {}
    ~PendingSearch() {
        if (!done_) ldap_abandon_ext(ld_, msgid_, nullptr, nullptr);
    }
    PendingSearch(const PendingSearch&) = delete;
    PendingSearch& operator=(const PendingSearch&) = delete;
    void finished() { done_ = true; }

private:
    LDAP* ld_;
    int msgid_;
    bool done_ = false;
};

// ---- helpers -------------------------------------------------------------------------------

std::string diagnostic_of(LDAP* ld) {
    char* raw = nullptr;
    if (ld == nullptr || ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &raw) != LDAP_OPT_SUCCESS) return {};
    LdapString owned(raw);
    return owned ? std::string(owned.get()) : std::string();
}

int result_code_of(LDAP* ld) {
    int code = LDAP_OTHER;
    ldap_get_option(ld, LDAP_OPT_RESULT_CODE, &code);
    return code;
}

[[noreturn]] void fail(const std::string& uri, std::string_view operation, int code, std::string_view diagnostic) {
    throw DirectoryError(fmt::format("{}: {}: {}", uri, operation, ldap_error_text(code, diagnostic)),
                         is_transient(code));
}

timeval seconds(unsigned s) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(s);
    return tv;
}

std::string ascii_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::vector<std::string> split_uris(const std::string& uris) {
    // Spaces as the config documents; commas too, as ldap.conf's URI accepts both.
    std::vector<std::string> out;
    std::string current;
    for (char c : uris) {
        if (c == ' ' || c == '\t' || c == ',') {
            if (!current.empty()) out.push_back(std::move(current));
            current.clear();
        } else {
            current += c;
        }
    }
    if (!current.empty()) out.push_back(std::move(current));
    return out;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && ascii_lower(s.substr(0, prefix.size())) == prefix;
}

// The longest bind password file we read: a password is a line, anything bigger is a wrong file.
constexpr std::size_t kMaxPasswordFileBytes = 4096;

}  // namespace

// ---- free functions ------------------------------------------------------------------------

const std::vector<std::string>* Entry::values(std::string_view name) const {
    auto it = attributes.find(name);
    return it == attributes.end() ? nullptr : &it->second;
}

std::string ldap_error_text(int code, std::string_view diagnostic) {
    std::string text = fmt::format("{} ({})", ldap_err2string(code), code);
    if (!diagnostic.empty()) {
        text += ": ";
        text += diagnostic;
    }
    return text;
}

bool is_transient(int code) {
    switch (code) {
    case LDAP_SERVER_DOWN:
    case LDAP_CONNECT_ERROR:
    case LDAP_TIMEOUT:
    case LDAP_BUSY:
    case LDAP_UNAVAILABLE:
    // The server's own time limit on one page: a loaded server, not a wrong request (our
    // searches are bounded by the same config.timeout_seconds); a later try usually passes.
    case LDAP_TIMELIMIT_EXCEEDED:
        return true;
    default:
        // LDAP_OTHER included: servers use it for misconfiguration as often as for trouble,
        // and retrying a misconfiguration forever hides it from the admin.
        return false;
    }
}

std::string read_bind_password(const std::string& path) {
    auto refuse = [&](std::string_view why) {
        return DirectoryError(fmt::format("bind_password_file {}: {}", path, why), false);
    };
    // O_NONBLOCK: a FIFO put there must not hang us; it is refused as not a regular file below.
    FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) throw refuse(fmt::format("cannot open: {}", std::strerror(errno)));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw refuse(fmt::format("cannot stat: {}", std::strerror(errno)));
    if (!S_ISREG(st.st_mode)) throw refuse("not a regular file");
    const unsigned mode = st.st_mode & 07777;
    if ((mode & (S_IROTH | S_IWOTH)) != 0)
        throw refuse(fmt::format("readable or writable by others (mode {:04o}); chmod 0600 or 0640 it", mode));
    if ((mode & S_IWGRP) != 0)
        throw refuse(fmt::format("writable by its group (mode {:04o}); chmod 0600 or 0640 it", mode));
    // root may use a file the follower's user owns (coexist-sync, design 13.5): it could read it
    // anyway, and the mode check above is what keeps the secret from others.
    if (st.st_uid != 0 && st.st_uid != ::geteuid() && ::geteuid() != 0)
        throw refuse(fmt::format("owned by uid {}, neither root nor us (uid {}); chown it", st.st_uid, ::geteuid()));

    std::string content;
    char buffer[1024];
    for (;;) {
        ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw refuse(fmt::format("cannot read: {}", std::strerror(errno)));
        if (n == 0) break;
        content.append(buffer, static_cast<std::size_t>(n));
        if (content.size() > kMaxPasswordFileBytes)
            throw refuse(fmt::format("longer than {} bytes; it must hold the password on its first line",
                                     kMaxPasswordFileBytes));
    }
    std::string password = content.substr(0, content.find('\n'));
    if (!password.empty() && password.back() == '\r') password.pop_back();
    if (password.empty())
        throw refuse("the password (its first line) is empty; libldap would bind anonymously");
    return password;
}

std::vector<std::string> LdapSession::take_skipped_references() {
    return std::exchange(skipped_references_, {});
}

std::vector<std::string> reference_urls(LDAP* ld, LDAPMessage* message) {
    std::vector<std::string> urls;
    char** raw = nullptr;
    if (ldap_parse_reference(ld, message, &raw, nullptr, 0) != LDAP_SUCCESS) return urls;
    for (char** u = raw; u && *u; ++u) urls.emplace_back(*u);
    ber_memvfree(reinterpret_cast<void**>(raw));
    return urls;
}

Entry entry_from_message(LDAP* ld, LDAPMessage* message) {
    Entry entry;
    LdapString dn(ldap_get_dn(ld, message));
    if (!dn) throw DirectoryError(fmt::format("search result entry without a DN: {}",
                                              ldap_error_text(result_code_of(ld), diagnostic_of(ld))),
                                  false);
    entry.dn = dn.get();
    BerElement* raw_ber = nullptr;
    LdapString name(ldap_first_attribute(ld, message, &raw_ber));
    Ber ber(raw_ber);
    for (; name; name.reset(ldap_next_attribute(ld, message, ber.get()))) {
        // "member;range=0-1499", "userCertificate;binary": the options are not the name.
        std::string key = ascii_lower(std::string_view(name.get()).substr(0, std::strcspn(name.get(), ";")));
        auto& values = entry.attributes[key];
        Values vals(ldap_get_values_len(ld, message, name.get()));
        for (berval** v = vals.get(); v != nullptr && *v != nullptr; ++v)
            values.emplace_back((*v)->bv_val, (*v)->bv_len);
    }
    return entry;
}

// ---- LdapSession ---------------------------------------------------------------------------

namespace {

// Sets one option or fails with the option's name (a libldap built without TLS fails here).
void set_option(LDAP* ld, const std::string& uri, int option, const void* value, std::string_view what) {
    // LDAP_OPT_ERROR is -1, the code of LDAP_SERVER_DOWN: not passed through fail(), which
    // would call a refused option "can't contact" and transient.
    if (ldap_set_option(ld, option, value) != LDAP_OPT_SUCCESS)
        throw DirectoryError(fmt::format("{}: set {}: refused by libldap", uri, what), false);
}

// Called by libldap once it has connected a socket: reads on it give up after the operation
// timeout. libldap polls before it reads, but once a message's tag and length have arrived it
// reads the rest in the same call, and on its blocking socket that read waits for ever when the
// server or the link stalls right there: inside a follower's refresh, with the map's write
// transaction open. With SO_RCVTIMEO the read fails with EAGAIN, which libldap takes as "not
// yet", and the caller's own timeout then applies. The timeout is the handle's own
// (LDAP_OPT_TIMEOUT, set before any connection), so the callback needs no state of its own.
int bound_reads(LDAP* ld, Sockbuf* sb, LDAPURLDesc*, struct sockaddr*, struct ldap_conncb*) {
    timeval* raw = nullptr;
    if (ldap_get_option(ld, LDAP_OPT_TIMEOUT, &raw) != LDAP_OPT_SUCCESS || raw == nullptr) return 0;
    const timeval timeout = *raw;
    ldap_memfree(raw);
    ber_socket_t fd = -1;
    if (ber_sockbuf_ctrl(sb, LBER_SB_OPT_GET_FD, &fd) != 1 || fd < 0) return 0;
    // A failure leaves the read unbounded, as before: not worth refusing the connection for.
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    return 0;
}
void no_cleanup(LDAP*, Sockbuf*, struct ldap_conncb*) {}
ldap_conncb kBoundReads{bound_reads, no_cleanup, nullptr};  // libldap keeps the pointer: static

// One URI: initialise, options, TLS, bind. Returns the bound handle or throws.
LdapHandle connect_one(const DirectoryConfig& config, const std::string& uri, const std::string* password) {
    LDAP* raw = nullptr;
    int rc = ldap_initialize(&raw, uri.c_str());
    LdapHandle ld(raw);
    if (rc != LDAP_SUCCESS) fail(uri, "parse URI", rc, {});

    const int version = LDAP_VERSION3;
    set_option(ld.get(), uri, LDAP_OPT_PROTOCOL_VERSION, &version, "protocol version 3");
    // Referrals would make libldap bind anonymously to servers we did not configure.
    set_option(ld.get(), uri, LDAP_OPT_REFERRALS, LDAP_OPT_OFF, "no referrals");
    const timeval timeout = seconds(config.timeout_seconds);
    set_option(ld.get(), uri, LDAP_OPT_NETWORK_TIMEOUT, &timeout, "network timeout");
    set_option(ld.get(), uri, LDAP_OPT_TIMEOUT, &timeout, "operation timeout");
    set_option(ld.get(), uri, LDAP_OPT_CONNECT_CB, &kBoundReads, "connection callback");

    const bool ldaps = starts_with_nocase(uri, "ldaps://");
    const bool start_tls = config.start_tls && starts_with_nocase(uri, "ldap://");
    if (ldaps || start_tls) {
        // TLS options on this handle and a context of its own (NEWCTX): never the process-wide
        // defaults, which ldap.conf or another session may have set differently.
        const int demand = LDAP_OPT_X_TLS_DEMAND;
        set_option(ld.get(), uri, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand, "TLS require certificate");
        // Without tls_ca_file libldap uses the system's trust store.
        if (!config.tls_ca_file.empty())
            set_option(ld.get(), uri, LDAP_OPT_X_TLS_CACERTFILE, config.tls_ca_file.c_str(),
                       fmt::format("tls_ca_file {}", config.tls_ca_file));
        if (!config.tls_cert_file.empty())
            set_option(ld.get(), uri, LDAP_OPT_X_TLS_CERTFILE, config.tls_cert_file.c_str(),
                       fmt::format("tls_cert_file {}", config.tls_cert_file));
        if (!config.tls_key_file.empty())
            set_option(ld.get(), uri, LDAP_OPT_X_TLS_KEYFILE, config.tls_key_file.c_str(),
                       fmt::format("tls_key_file {}", config.tls_key_file));
        const int client = 0;
        // The files are read here: a missing or unreadable CA/cert/key is the admin's to fix.
        if (ldap_set_option(ld.get(), LDAP_OPT_X_TLS_NEWCTX, &client) != LDAP_OPT_SUCCESS) {
            const std::string diagnostic = diagnostic_of(ld.get());
            throw DirectoryError(fmt::format("{}: cannot set up TLS from tls_ca_file '{}', tls_cert_file '{}', "
                                             "tls_key_file '{}'{}{}",
                                             uri, config.tls_ca_file, config.tls_cert_file, config.tls_key_file,
                                             diagnostic.empty() ? "" : ": ", diagnostic),
                                 false);
        }
    }

    if (start_tls) {
        rc = ldap_start_tls_s(ld.get(), nullptr, nullptr);
        if (rc == LDAP_CONNECT_ERROR)
            // The connection stood and the handshake failed: an untrusted or mismatched
            // certificate far more often than a network accident, so the admin must look.
            throw DirectoryError(fmt::format("{}: StartTLS: TLS handshake failed (certificate not trusted by "
                                             "tls_ca_file, or name mismatch?): {}",
                                             uri, ldap_error_text(rc, diagnostic_of(ld.get()))),
                                 false);
        if (rc == LDAP_PROTOCOL_ERROR || rc == LDAP_UNAVAILABLE)
            // "unsupported extended operation": the server has no TLS configured.
            throw DirectoryError(fmt::format("{}: StartTLS refused: the server offers no TLS on this port (configure "
                                             "TLS on the server, or use ldaps://): {}",
                                             uri, ldap_error_text(rc, diagnostic_of(ld.get()))),
                                 false);
        if (rc != LDAP_SUCCESS) fail(uri, "StartTLS", rc, diagnostic_of(ld.get()));
    }

    berval credentials{0, nullptr};
    if (password != nullptr) {
        credentials.bv_val = const_cast<char*>(password->data());  // libldap's API is not const
        credentials.bv_len = password->size();
    }
    const char* dn = config.bind_dn.empty() ? nullptr : config.bind_dn.c_str();
    // Even an anonymous session binds: that is what opens the connection, so an unreachable
    // server is noticed here, not in the middle of the first search.
    rc = ldap_sasl_bind_s(ld.get(), dn, LDAP_SASL_SIMPLE, &credentials, nullptr, nullptr, nullptr);
    if (rc != LDAP_SUCCESS) {
        std::string operation = dn ? fmt::format("bind as {}", config.bind_dn) : std::string("anonymous bind");
        const std::string diagnostic = diagnostic_of(ld.get());
        // ldaps://: libldap reports a failed handshake as "server down", with the TLS library's
        // text as the only clue (a refused connection has none). It stays transient, since a
        // server restarting mid-handshake looks the same, but the message points at TLS.
        if (ldaps && rc == LDAP_SERVER_DOWN && !diagnostic.empty())
            operation += " (TLS handshake failed? check tls_ca_file and the certificate's name)";
        fail(uri, operation, rc, diagnostic);
    }
    return ld;
}

}  // namespace

LdapSession::LdapSession(const DirectoryConfig& config) : config_(config) {
    const std::vector<std::string> uris = split_uris(config.uri);
    if (uris.empty()) throw DirectoryError("[directory] uri is empty", false);
    std::string password;
    if (!config.bind_dn.empty()) {
        if (config.bind_password_file.empty())
            throw DirectoryError(fmt::format("bind_dn {} needs bind_password_file", config.bind_dn), false);
        password = read_bind_password(config.bind_password_file);
    }
    // The next URI is tried only when this one is unreachable; a refusal (bad password, bad
    // certificate) would be the same on a replica, and trying on would only hide it.
    std::string failures;
    for (const auto& uri : uris) {
        try {
            LdapHandle ld = connect_one(config, uri, config.bind_dn.empty() ? nullptr : &password);
            uri_ = uri;
            ld_ = ld.release();
            return;
        } catch (const DirectoryError& e) {
            if (!e.transient()) throw;
            if (!failures.empty()) failures += "; ";
            failures += e.what();
        }
    }
    throw DirectoryError(fmt::format("no directory server answers: {}", failures), true);
}

LdapSession::~LdapSession() {
    if (ld_ != nullptr) ldap_unbind_ext_s(ld_, nullptr, nullptr);
}

bool LdapSession::supports_control(std::string_view oid) {
    char attr[] = "supportedControl";
    char* attrs[] = {attr, nullptr};
    timeval timeout = seconds(config_.timeout_seconds);
    LDAPMessage* raw = nullptr;
    int rc = ldap_search_ext_s(ld_, "", LDAP_SCOPE_BASE, "(objectClass=*)", attrs, 0, nullptr, nullptr, &timeout,
                               1, &raw);
    Message result(raw);
    if (is_transient(rc)) fail(uri_, "read the root DSE", rc, diagnostic_of(ld_));
    if (rc != LDAP_SUCCESS) return false;
    for (LDAPMessage* m = ldap_first_entry(ld_, result.get()); m != nullptr; m = ldap_next_entry(ld_, m)) {
        Entry dse = entry_from_message(ld_, m);
        if (const auto* controls = dse.values("supportedcontrol"))
            for (const auto& c : *controls)
                if (c == oid) return true;
    }
    return false;
}

void LdapSession::search_paged(std::string_view base, int scope, std::string_view filter,
                               const std::vector<std::string>& attributes,
                               const std::function<void(Entry&&)>& visit) {
    const std::string base_s(base);
    const std::string filter_s(filter);
    // libldap wants a NULL-terminated char* array; the strings stay owned by `attributes`.
    std::vector<char*> attrs;
    for (const auto& a : attributes) attrs.push_back(const_cast<char*>(a.c_str()));
    attrs.push_back(nullptr);
    const std::string operation = fmt::format("search base {} filter {}", base_s, filter_s);

    BervalBytes cookie;
    do {
        LDAPControl* raw_control = nullptr;
        int rc = ldap_create_page_control(ld_, static_cast<ber_int_t>(config_.page_size), &cookie.value, 0,
                                          &raw_control);
        Control page_control(raw_control);
        if (rc != LDAP_SUCCESS) fail(uri_, fmt::format("{}: create the paged results control", operation), rc, {});
        LDAPControl* server_controls[] = {page_control.get(), nullptr};

        timeval timeout = seconds(config_.timeout_seconds);
        int msgid = 0;
        rc = ldap_search_ext(ld_, base_s.c_str(), scope, filter_s.c_str(), attrs.data(), 0, server_controls, nullptr,
                             &timeout, LDAP_NO_LIMIT, &msgid);
        if (rc != LDAP_SUCCESS) fail(uri_, operation, rc, diagnostic_of(ld_));
        PendingSearch pending(ld_, msgid);

        cookie.reset();
        for (bool page_done = false; !page_done;) {
            LDAPMessage* raw_message = nullptr;
            timeval wait = seconds(config_.timeout_seconds);
            rc = ldap_result(ld_, msgid, LDAP_MSG_ONE, &wait, &raw_message);
            Message message(raw_message);
            if (rc == 0) fail(uri_, fmt::format("{}: no answer", operation), LDAP_TIMEOUT, {});
            if (rc < 0) fail(uri_, operation, result_code_of(ld_), diagnostic_of(ld_));
            switch (ldap_msgtype(message.get())) {
            case LDAP_RES_SEARCH_ENTRY:
                visit(entry_from_message(ld_, message.get()));
                break;
            case LDAP_RES_SEARCH_REFERENCE:
                // Continuation references lead to other servers: not ours to follow, but said.
                for (auto& url : reference_urls(ld_, message.get()))
                    if (skipped_references_.size() < kMaxSkippedReferences) skipped_references_.push_back(std::move(url));
                break;
            case LDAP_RES_SEARCH_RESULT: {
                pending.finished();
                page_done = true;
                int code = LDAP_OTHER;
                char* raw_diagnostic = nullptr;
                LDAPControl** raw_controls = nullptr;
                rc = ldap_parse_result(ld_, message.get(), &code, nullptr, &raw_diagnostic, nullptr, &raw_controls, 0);
                LdapString diagnostic(raw_diagnostic);
                Controls controls(raw_controls);
                if (rc != LDAP_SUCCESS) fail(uri_, fmt::format("{}: parse the result", operation), rc, {});
                if (code == LDAP_NO_SUCH_OBJECT)
                    throw DirectoryError(fmt::format("{}: search: base {} does not exist: {}", uri_, base_s,
                                                     ldap_error_text(code, diagnostic ? diagnostic.get() : "")),
                                         false);
                if (code != LDAP_SUCCESS) fail(uri_, operation, code, diagnostic ? diagnostic.get() : "");
                // No control back: the server does not page, and this one page was everything.
                LDAPControl* response = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, controls.get(), nullptr);
                if (response != nullptr) {
                    ber_int_t estimate = 0;
                    rc = ldap_parse_pageresponse_control(ld_, response, &estimate, &cookie.value);
                    if (rc != LDAP_SUCCESS)
                        fail(uri_, fmt::format("{}: parse the paged results response", operation), rc, {});
                }
                break;
            }
            default:
                break;  // intermediate responses are not part of a paged search
            }
        }
    } while (cookie.value.bv_len > 0);
}

}  // namespace coexist::directory
