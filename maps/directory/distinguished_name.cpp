// normalize_dn() (distinguished_name.hpp): libldap parses and writes the DN; each value is put in
// its caseIgnoreMatch form here, with ICU for what is not ASCII.
#include "distinguished_name.hpp"

#include <ldap.h>
#include <unicode/uchar.h>
#include <unicode/unorm2.h>
#include <unicode/utf16.h>
#include <unicode/ustring.h>

#include <cstring>
#include <new>
#include <optional>

#include "coexist/address.hpp"

namespace coexist::directory {

namespace {

// A DN of plain RDNs (type=value, the value letters, digits and . _ - @ only) is already in
// RFC 4514 form; lowercasing is all the general way below would do to it. Most DNs are such
// (uid=jdoe,ou=people,dc=contoso,dc=com), and parsing a 30,000-member group's DNs through
// libldap each time the group changes costs a quarter of a second.
bool plain_dn(std::string_view dn) {
    if (dn.empty()) return false;
    bool in_value = false, type_start = true, value_empty = true;
    for (char c : dn) {
        const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!in_value) {
            if (c == '=') {
                if (type_start) return false;
                in_value = true;
                value_empty = true;
            } else if (alnum || (c == '-' && !type_start)) {
                if (type_start && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return false;
                type_start = false;
            } else {
                return false;
            }
        } else if (c == ',') {
            if (value_empty) return false;
            in_value = false;
            type_start = true;
        } else if (alnum || c == '.' || c == '_' || c == '-' || c == '@') {
            value_empty = false;
        } else {
            return false;
        }
    }
    return in_value && !value_empty;
}

// The text as slapd's caseIgnoreMatch normalizes it (UTF8bvnormalize with LDAP_UTF8_CASEFOLD,
// liblunicode): each code point lowercased by Unicode's simple mapping (one code point for one:
// "İ" is "i", "ß" and a final "ς" stay as they are), then compatibility composed (NFKC). Not
// ICU's full case folding (NFKC_Casefold), which makes "weiß" and "weiss" one name where slapd
// keeps two entries. nullopt for text that is not UTF-8.
std::optional<std::string> slapd_casefold(std::string_view utf8) {
    UErrorCode error = U_ZERO_ERROR;
    const UNormalizer2* nfkc = unorm2_getNFKCInstance(&error);
    if (U_FAILURE(error)) return std::nullopt;
    const auto length = static_cast<int32_t>(utf8.size());
    int32_t units = 0;
    u_strFromUTF8(nullptr, 0, &units, utf8.data(), length, &error);  // measures; fails on bad UTF-8
    if (U_FAILURE(error) && error != U_BUFFER_OVERFLOW_ERROR) return std::nullopt;
    std::u16string text(static_cast<std::size_t>(units), u'\0');
    error = U_ZERO_ERROR;
    u_strFromUTF8(text.data(), units, nullptr, utf8.data(), length, &error);
    if (U_FAILURE(error)) return std::nullopt;
    std::u16string lower;
    lower.reserve(text.size());
    for (int32_t i = 0; i < units;) {
        UChar32 c = 0;
        U16_NEXT(text.data(), i, units, c);
        c = u_tolower(c);
        if (U_IS_BMP(c)) {
            lower.push_back(static_cast<char16_t>(c));
        } else {
            lower.push_back(static_cast<char16_t>(U16_LEAD(c)));
            lower.push_back(static_cast<char16_t>(U16_TRAIL(c)));
        }
    }
    const auto lower_units = static_cast<int32_t>(lower.size());
    error = U_ZERO_ERROR;
    const int32_t folded_units = unorm2_normalize(nfkc, lower.data(), lower_units, nullptr, 0, &error);
    if (U_FAILURE(error) && error != U_BUFFER_OVERFLOW_ERROR) return std::nullopt;
    std::u16string folded(static_cast<std::size_t>(folded_units), u'\0');
    error = U_ZERO_ERROR;
    unorm2_normalize(nfkc, lower.data(), lower_units, folded.data(), folded_units, &error);
    if (U_FAILURE(error)) return std::nullopt;
    int32_t bytes = 0;
    error = U_ZERO_ERROR;
    u_strToUTF8(nullptr, 0, &bytes, folded.data(), folded_units, &error);
    if (U_FAILURE(error) && error != U_BUFFER_OVERFLOW_ERROR) return std::nullopt;
    std::string out(static_cast<std::size_t>(bytes), '\0');
    error = U_ZERO_ERROR;
    u_strToUTF8(out.data(), bytes, nullptr, folded.data(), folded_units, &error);
    if (U_FAILURE(error)) return std::nullopt;
    return out;
}

// One attribute value as caseIgnoreMatch compares it: lowercased and composed as slapd does
// (bytes that are not UTF-8 only ASCII-lowercased), no space leading or trailing, runs of spaces one space (RFC 4518 2.6.1).
std::string matching_form(std::string_view value) {
    std::string folded;
    if (!is_ascii(value)) folded = slapd_casefold(value).value_or(std::string());
    if (folded.empty()) folded = lowercase_ascii(value);
    std::string out;
    out.reserve(folded.size());
    bool space = false;
    for (const char c : folded) {
        if (c == ' ') {
            space = !out.empty();
            continue;
        }
        if (space) out.push_back(' ');
        space = false;
        out.push_back(c);
    }
    return out;
}

struct ParsedDn {
    LDAPDN dn = nullptr;
    ~ParsedDn() {
        if (dn) ldap_dnfree(dn);
    }
};

struct LdapText {
    char* text = nullptr;
    ~LdapText() {
        if (text) ldap_memfree(text);
    }
};

// Replaces an AVA's value by `value`, in memory libldap's ldap_dnfree() frees.
void replace_value(LDAPAVA& ava, const std::string& value) {
    auto* copy = static_cast<char*>(ber_memalloc(value.size() + 1));
    if (!copy) throw std::bad_alloc();
    std::memcpy(copy, value.data(), value.size());
    copy[value.size()] = '\0';
    if (ava.la_flags & LDAP_AVA_FREE_VALUE) ber_memfree(ava.la_value.bv_val);
    ava.la_value.bv_val = copy;
    ava.la_value.bv_len = value.size();
    // Written as UTF-8 whatever the value was parsed from: "J\C3\B6rg" and "Jörg" alike.
    ava.la_flags = (ava.la_flags & ~LDAP_AVA_NONPRINTABLE) | LDAP_AVA_FREE_VALUE;
}

}  // namespace

std::string normalize_dn(std::string_view dn) {
    if (plain_dn(dn)) return lowercase_ascii(dn);
    const std::string input(dn);  // libldap wants a terminated string
    ParsedDn parsed;
    if (ldap_str2dn(input.c_str(), &parsed.dn, LDAP_DN_FORMAT_LDAP) != LDAP_SUCCESS || !parsed.dn)
        return lowercase_ascii(dn);
    for (LDAPRDN* rdn = parsed.dn; *rdn; ++rdn)
        for (LDAPAVA** ava = *rdn; *ava; ++ava) {
            if ((*ava)->la_flags & LDAP_AVA_BINARY) continue;  // "#04...": compared as given
            replace_value(**ava, matching_form(std::string_view((*ava)->la_value.bv_val, (*ava)->la_value.bv_len)));
        }
    LdapText written;
    if (ldap_dn2str(parsed.dn, &written.text, LDAP_DN_FORMAT_LDAPV3) != LDAP_SUCCESS || !written.text)
        return lowercase_ascii(dn);
    return lowercase_ascii(written.text);  // the attribute types
}

}  // namespace coexist::directory
