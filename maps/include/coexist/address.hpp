// Envelope address parsing: the one place where raw recipient strings from Postfix, the CSV
// import or the command line become (local part, domain) pairs. Every byte is untrusted.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace coexist {

// Longest address we accept, brackets excluded. RFC 5321 allows 64 + 1 + 255; Postfix accepts
// more, so leave room, but bound it: nothing longer is ever looked up or copied.
inline constexpr std::size_t kMaxAddressLength = 1024;

struct Address {
    // Postfix's internal (unquoted) form, case preserved: "bob"@x gives bob, "john doe"@x gives
    // john doe (src/global/quote_822_local.c, unquote_822_local()). The key a table is asked for
    // is built from it by canonical_key() (canonical_address.hpp).
    std::string local;
    std::string domain;  // lowercased, trailing dot removed
};

// Strips one pair of <>, drops a source route ("@a,@b:"), splits at the last '@' outside quotes
// and unquotes the local part as Postfix does. No blank is trimmed: a key Postfix asks for is
// taken as it is (the internal form of " ann"@x is " ann@x", not ann@x); what an admin typed is
// trimmed by its reader first (trim_blanks()).
// Returns nullopt for: empty, no '@', empty local part or domain, longer than
// kMaxAddressLength, NUL/CR/LF or other control bytes, unbalanced brackets or quotes, unquoted
// spaces or specials in the local part, a domain with characters outside [A-Za-z0-9.-] once
// case-folded as Postfix folds it (a UTF-8 domain that folds to ASCII, "contoſo.com", is that
// ASCII domain; a U-label such as bücher.example is no address we route, never a crash). 8-bit
// bytes in the local part are accepted (RFC 6531). Never throws beyond std::bad_alloc.
std::optional<Address> parse_address(std::string_view raw);

// An address as Postfix reads it once trivial-rewrite has stripped its source route: a key it
// asks a table for (the socketmap), its {rcpt_addr} macro; in the external or the internal
// form. Nothing is stripped again: RCPT TO:<"@a:@b:ann"@contoso.com> loses "@a:" to Postfix,
// which then looks up and delivers the user "@b:ann" (in the internal form, @b:ann@contoso.com),
// and stripping "@b:" here too made the socketmap answer for ann (a dual user's key echoed
// back unquoted was read by Postfix as one route-address: the old system's copy lost). Else as
// parse_address().
std::optional<Address> parse_rewritten_address(std::string_view text);

// A recipient's domain as Postfix matches it against relay_domains and its tables, the form
// parse_address() gives: a trailing dot dropped, lowercased, a domain with 8-bit bytes case
// folded as Postfix folds it (contoſo.com is contoso.com) or, a U-label, its A-label (UTS #46
// nontransitional: müller.de is xn--mller-kva.de). nullopt when it is no domain name in any of
// these forms. Never throws beyond std::bad_alloc.
std::optional<std::string> matched_domain(std::string_view domain);

// Why `domain` (ASCII, as parse_address() returns it) is no host name mail can be sent to, or
// nullopt: RFC 1123 section 2.1 (labels of letters, digits and hyphens, 1 to 63 characters, none
// beginning or ending with a hyphen, the last not all digits), A-labels that decode (RFC 5891),
// at most 253 characters,
// and `min_labels` labels at least (a routing domain or target named "localhost" or "contoso"
// reaches no other system; a next hop's host may be a name of the local network). For what an
// admin names (coexist.ini's domains and hosts, a target), never for a recipient Postfix hands
// over, which is taken as it is. Never throws beyond std::bad_alloc.
std::optional<std::string> host_name_problem(std::string_view domain, std::size_t min_labels = 2);

// `text` without the spaces and tabs at either end: for what an admin typed (a CSV cell, a
// command-line argument, a directory value) before it is parsed, never for a key Postfix asks.
std::string_view trim_blanks(std::string_view text);

// ASCII-only lowercase (bytes >= 0x80 unchanged): what Postfix does for table lookups.
std::string lowercase_ascii(std::string_view s);

// True when every byte of `s` is ASCII (below 0x80): no UTF-8, nothing ICU would fold.
bool is_ascii(std::string_view s) noexcept;

// Splits a local part at the first character from `delimiters` (Postfix recipient_delimiter
// semantics). base excludes the delimiter; extension includes it ("+news"), empty when none.
struct LocalPart {
    std::string_view base;
    std::string_view extension;
};
LocalPart split_extension(std::string_view local, std::string_view delimiters);

}  // namespace coexist
