// Distinguished names compared as the directory compares them (RFC 4517 distinguishedNameMatch):
// a group's member values against the DNs its entries are read under.
#pragma once

#include <string>
#include <string_view>

namespace coexist::directory {

// The DN in a form two DNs can be compared in: parsed as RFC 4514 (and LDAPv2) string forms,
// attribute types lowercased, each string value in its caseIgnoreMatch form as slapd makes it
// (each code point lowercased by Unicode's simple mapping, then compatibility composed, NFKC;
// then insignificant spaces removed: none leading or trailing, one between words, RFC 4518),
// written back in RFC 4514 form. So "uid=JÖRG, ou=People" and "uid=jörg,ou=people", or
// "cn=Jörg  Müller" and "cn=jörg müller", are one DN, as slapd's member checks find them, and
// "uid=weiß" and "uid=weiss" are two, as there. Values given as BER ("#04...") are compared
// as given. Folds values of every attribute: a naming attribute with caseExactMatch is rare in
// a DN, and two entries whose DNs differ only in its case rarer still. A DN libldap cannot
// parse is returned with ASCII lowercased, comparable with itself. Never throws but bad_alloc.
std::string normalize_dn(std::string_view dn);

}  // namespace coexist::directory
