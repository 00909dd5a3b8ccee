#include "coexist/address.hpp"

#include <fmt/format.h>
#include <unicode/uidna.h>

#include <algorithm>
#include <array>
#include <exception>
#include <memory>
#include <stdexcept>

#include "coexist/canonical_address.hpp"
#include "coexist/log_text.hpp"

namespace coexist {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

bool valid_domain(std::string_view d) {
    if (d.empty() || d.size() > 255) return false;
    for (unsigned char c : d) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.';
        if (!ok) return false;
    }
    // No empty labels: ".a", "a..b"
    return d.front() != '.' && d.find("..") == std::string_view::npos;
}

struct IdnaClose {
    void operator()(UIDNA* idna) const noexcept { uidna_close(idna); }
};

// UTS #46 as Postfix's midna_domain_to_ascii() opens it (midna_domain_transitional = no, the
// default): nontransitional, so "ß" stays a letter of its own (xn--...), not "ss". One for the
// process: uidna_nameToASCII_UTF8() takes it const, and ICU's IDNA instances are thread-safe.
const UIDNA& idna() {
    static const std::unique_ptr<UIDNA, IdnaClose> instance = [] {
        UErrorCode error = U_ZERO_ERROR;
        std::unique_ptr<UIDNA, IdnaClose> i(uidna_openUTS46(UIDNA_NONTRANSITIONAL_TO_ASCII, &error));
        if (U_FAILURE(error) || !i) throw std::runtime_error(std::string("uidna_openUTS46: ") + u_errorName(error));
        return i;
    }();
    return *instance;
}

// The A-label form of a UTF-8 domain (müller.de -> xn--mller-kva.de), or nullopt when UTS #46
// finds any error in it, as midna_domain_to_ascii() refuses it then. Postfix (smtputf8_enable
// = yes) matches a recipient's UTF-8 domain against relay_domains in this form
// (match_hostname()), and relays its mail to the MX of this name.
std::optional<std::string> a_label_domain(std::string_view domain) {
    char out[1024];
    UErrorCode error = U_ZERO_ERROR;
    UIDNAInfo info = UIDNA_INFO_INITIALIZER;
    const int32_t n = uidna_nameToASCII_UTF8(&idna(), domain.data(), static_cast<int32_t>(domain.size()), out,
                                             static_cast<int32_t>(sizeof out), &info, &error);
    if (U_FAILURE(error) || info.errors != 0 || n <= 0 || n >= static_cast<int32_t>(sizeof out)) return std::nullopt;
    return std::string(out, static_cast<std::size_t>(n));
}

}  // namespace

std::string lowercase_ascii(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

bool is_ascii(std::string_view s) noexcept {
    return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

namespace {

// "@a.example,@b.example:" before the mailbox: an RFC 5321 source route (4.1.1.3: a receiver
// may ignore it, and Postfix does: RCPT TO:<@a:u@d> is logged and looked up as u@d). Returns
// the address without it, or nullopt when the route is malformed.
std::optional<std::string_view> drop_source_route(std::string_view raw) {
    if (raw.empty() || raw.front() != '@') return raw;
    const auto colon = raw.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    std::string_view route = raw.substr(0, colon);
    while (!route.empty()) {
        const auto comma = route.find(',');
        const std::string_view hop = route.substr(0, comma);
        if (hop.size() < 2 || hop.front() != '@' || !valid_domain(hop.substr(1))) return std::nullopt;
        if (comma == std::string_view::npos) break;
        route.remove_prefix(comma + 1);
    }
    return raw.substr(colon + 1);
}

// Outside a quoted string, a local part is atoms and dots (RFC 5321 Dot-string; RFC 6531 adds
// UTF-8). These specials, or a space, make it no address at all. A table: every lookup of the
// daemons checks its local part byte by byte.
constexpr std::array<bool, 256> kUnquotedSpecial = [] {
    std::array<bool, 256> table{};
    for (const char c : std::string_view(" \t<>()[],;:@\\")) table[static_cast<unsigned char>(c)] = true;
    return table;
}();

bool is_unquoted_special(char c) { return kUnquotedSpecial[static_cast<unsigned char>(c)]; }

}  // namespace

std::optional<std::string> host_name_problem(std::string_view domain, std::size_t min_labels) {
    const std::string_view whole = domain;
    if (domain.size() > 253) return std::string("longer than 253 characters");
    std::size_t labels = 0;
    while (true) {
        const auto dot = domain.find('.');
        const std::string_view label = domain.substr(0, dot);
        ++labels;
        if (label.empty()) return std::string("an empty label");
        if (label.size() > 63) return fmt::format("the label '{}' is longer than 63 characters", printable(label, 63));
        for (const char c : label)
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
                return fmt::format("the label '{}' holds '{}'", printable(label), printable(std::string_view(&c, 1)));
        if (label.front() == '-' || label.back() == '-')
            return fmt::format("the label '{}' begins or ends with a hyphen", printable(label));
        if (dot == std::string_view::npos) {
            // RFC 1123 2.1: the highest-level label is never all digits (1.2.3.4 is an address,
            // 999.1.1.1 and 1.2.3 are nothing).
            if (std::all_of(label.begin(), label.end(), [](char c) { return c >= '0' && c <= '9'; }))
                return fmt::format("the last label '{}' is all digits: no top-level domain is", printable(label));
            break;
        }
        domain.remove_prefix(dot + 1);
    }
    if (labels < min_labels) return std::string("a single label, no domain other systems can reach");
    // An A-label ("xn--" label) must decode (RFC 5891 5.4): xn--zz is no name a resolver finds.
    const std::string lower = lowercase_ascii(whole);
    if ((lower.rfind("xn--", 0) == 0 || lower.find(".xn--") != std::string::npos) && !a_label_domain(lower))
        return std::string("it holds an A-label (xn--...) that is no valid internationalized name (IDNA)");
    return std::nullopt;
}

std::string_view trim_blanks(std::string_view text) {
    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
    return text;
}

std::optional<std::string> matched_domain(std::string_view domain) {
    if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);  // "contoso.com." is contoso.com
    if (valid_domain(domain)) return lowercase_ascii(domain);
    // A domain with 8-bit bytes that Postfix's case folding (smtputf8_enable = yes: ICU, as
    // fold_case()) turns into an ASCII one, e.g. "contoſo.com" (U+017F, long s) into
    // contoso.com: Postfix matches it against relay_domains and its tables as that domain and
    // relays it there, so it is that domain here too.
    if (is_ascii(domain)) return std::nullopt;
    std::string folded;
    try {
        folded = fold_case(domain);
    } catch (const std::exception&) {
        return std::nullopt;
    }
    if (valid_domain(folded)) return lowercase_ascii(folded);
    // A U-label (müller.de): the domain is its A-label, as for Postfix's relay_domains; the
    // map and the configuration hold domains in that form. Anything UTS #46 refuses (or whose
    // A-label is no host name) stays no domain.
    std::optional<std::string> ascii;
    try {
        ascii = a_label_domain(domain);
    } catch (const std::exception&) {
        return std::nullopt;
    }
    if (!ascii || !valid_domain(*ascii)) return std::nullopt;
    return lowercase_ascii(*ascii);
}

namespace {

enum class SourceRoute { strip, kept };

std::optional<Address> read_address(std::string_view raw, SourceRoute route) {
    if (!raw.empty() && raw.front() == '<') {
        if (raw.size() < 2 || raw.back() != '>') return std::nullopt;
        raw = raw.substr(1, raw.size() - 2);
    } else if (!raw.empty() && raw.back() == '>') {
        return std::nullopt;
    }
    if (raw.empty() || raw.size() > kMaxAddressLength) return std::nullopt;
    if (std::any_of(raw.begin(), raw.end(), [](char c) { return is_control(static_cast<unsigned char>(c)); }))
        return std::nullopt;
    const auto mailbox = route == SourceRoute::strip ? drop_source_route(raw) : std::optional(raw);
    if (!mailbox) return std::nullopt;

    // Unquote as unquote_822_local() does: quotes toggle, a backslash inside quotes takes the
    // next byte literally, the last '@' outside quotes starts the domain.
    std::string local;
    bool in_quote = false;
    std::size_t i = 0;
    if (mailbox->find('"') == std::string_view::npos) {
        // No quotes (almost every address): the same rules as the loop below, in one pass and
        // one allocation. The last '@' starts the domain; an '@' before it is part of the local
        // part (see below), any other special makes it no address.
        i = mailbox->rfind('@');
        if (i == std::string_view::npos) return std::nullopt;
        const std::string_view unquoted = mailbox->substr(0, i);
        if (std::any_of(unquoted.begin(), unquoted.end(), [](char c) { return c != '@' && is_unquoted_special(c); }))
            return std::nullopt;
        local.assign(unquoted);
    } else {
        for (; i < mailbox->size(); ++i) {
            const char c = (*mailbox)[i];
            if (c == '"') {
                in_quote = !in_quote;
                continue;
            }
            if (in_quote) {
                if (c == '\\') {
                    if (++i == mailbox->size()) return std::nullopt;
                    local.push_back((*mailbox)[i]);
                } else {
                    local.push_back(c);
                }
                continue;
            }
            if (c == '@' && mailbox->find('@', i + 1) == std::string_view::npos) break;
            // An unquoted '@' before the last one belongs to the local part: Postfix's smtpd takes
            // RCPT TO:<a@b@contoso.com> (strict_rfc821_envelopes = no) and looks it up and delivers
            // it as "a@b"@contoso.com, so a reject domain must see it as that user, not as foreign.
            if (c != '@' && is_unquoted_special(c)) return std::nullopt;
            local.push_back(c);
        }
    }
    if (in_quote || i >= mailbox->size() || local.empty()) return std::nullopt;
    // A source route inside the quotes, <"@x.example:ann"@contoso.com>: unquoted, Postfix's
    // internal form is @x.example:ann@contoso.com, and trivial-rewrite strips a leading route
    // from that as from any other (rewrite.c, "Strip source route": up to the first ':'), so
    // it looks up and delivers ann@contoso.com, as does the socketmap way. The milter decides on
    // the argument as written; without this it read "@x.example:ann" as an unknown user and
    // passed a migrated user's mail to the old system. The route is not checked: Postfix does not.
    if (route == SourceRoute::strip && local.front() == '@') {
        const auto colon = local.find(':');
        if (colon != std::string::npos) {
            local.erase(0, colon + 1);
            if (local.empty()) return std::nullopt;
        }
    }
    auto domain = matched_domain(mailbox->substr(i + 1));
    if (!domain) return std::nullopt;
    // A U-label domain grows as its A-label: the address as read is bounded as the text was
    // (fuzz_address found 972 + 1 + 57 bytes from 1,024).
    if (local.size() + 1 + domain->size() > kMaxAddressLength) return std::nullopt;
    return Address{std::move(local), std::move(*domain)};
}

}  // namespace

std::optional<Address> parse_address(std::string_view raw) { return read_address(raw, SourceRoute::strip); }

std::optional<Address> parse_rewritten_address(std::string_view text) {
    // "@b:ann@contoso.com" (the internal form) is read through its external form, the local
    // part quoted: unquoted, its ':' is no address at all.
    if (!text.empty() && text.front() == '@') return read_address(external_form(text), SourceRoute::kept);
    return read_address(text, SourceRoute::kept);
}

LocalPart split_extension(std::string_view local, std::string_view delimiters) {
    if (delimiters.empty()) return {local, {}};
    const auto pos = local.find_first_of(delimiters);
    // A local part that starts with the delimiter has no base to look up: treat as no extension,
    // as Postfix does (it never splits off the whole local part).
    if (pos == std::string_view::npos || pos == 0) return {local, {}};
    return {local.substr(0, pos), local.substr(pos)};
}

}  // namespace coexist
