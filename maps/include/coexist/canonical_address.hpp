// The canonical form of an address (design 13.2): the one key Postfix itself would look up in
// virtual_alias_maps for what a client wrote in RCPT TO. Every caller of route(), every
// coexist-map argument and every imported row goes through here, so the milter (which sees the
// address as the client wrote it), the socketmap (which gets Postfix's own form) and the map
// (which stores only canonical keys) agree character for character.
//
// Postfix's steps, in its order:
//   1. smtpd drops the angle brackets and any source route (RFC 5321 4.1.1.3 lets a receiver
//      ignore "@a,@b:"; Postfix logs RCPT TO:<@a:u@d> as to=<u@d>);
//   2. the address is kept in internal (unquoted) form: src/global/quote_822_local.c,
//      unquote_822_local();
//   3. a table is queried with the external form, quote_822_local_flags(..., QUOTE_FLAG_DEFAULT
//      = QUOTE_FLAG_8BITCLEAN): a local part that is a dot-string (8-bit text counts as ordinary
//      text) is written bare, anything else as one quoted-string (src/global/mail_addr_find.c,
//      find_addr(), MA_FORM_EXTERNAL_FIRST);
//   4. the key is case folded for the lookup: byte-wise ASCII lowercase for an all-ASCII key,
//      else ICU ucasemap_utf8FoldCase(locale "en_US", U_FOLD_CASE_DEFAULT) when smtputf8_enable
//      is on (src/util/casefold.c, casefoldx()).
//   5. with a recipient_delimiter, the full address first, then the address without its
//      extension: the local part cut at the first character of the delimiter set, never to an
//      empty base (src/global/mail_addr_find.c, mail_addr_find_opt(); src/global/strip_addr.c;
//      src/global/split_addr.c).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace coexist {

// Steps 1 and 2 are parse_address() (address.hpp): it gives the internal form.

// Postfix's external form of an internal local part: bare when it is an RFC 822 dot-string
// (8-bit bytes allowed), else "..." with '"' and '\' escaped (quote_822_local.c).
std::string quote_local_part(std::string_view internal_local);

// Case folding of a lookup key as Postfix does it with smtputf8_enable = yes (casefold.c):
// ASCII-only text byte by byte, anything else with ICU's default full case folding (so "ß"
// becomes "ss", "Σ" and "ς" become "σ"). Bytes that are not UTF-8 are kept as they are, as ICU
// does. Throws std::runtime_error only if ICU itself fails (out of memory).
std::string fold_case(std::string_view text);

// The canonical key of an internal-form local part in a domain: fold(quote(local))@domain.
std::string canonical_key(std::string_view internal_local, std::string_view domain);

// The canonical key of an address as a client, an admin or Postfix wrote it; nullopt when it is
// not an address.
std::optional<std::string> canonical_address(std::string_view raw);

// An address in Postfix's internal form (what smtpd hands a policy server as recipient=:
// extract_addr() internalizes it) turned into the external form every other caller gives:
// everything before the last '@' is the local part, quoted when it needs quotes.
std::string external_form(std::string_view internal_address);

// Postfix's split of a local part at its recipient delimiter (split_addr.c): at the first byte
// that is any of `delimiters`; nullopt when there is none, or when the base would be empty.
// `extension` starts with the delimiter character, as Postfix's saved extension does.
struct Extension {
    std::string_view base;
    std::string_view extension;
};
std::optional<Extension> strip_extension(std::string_view internal_local, std::string_view delimiters);

}  // namespace coexist
