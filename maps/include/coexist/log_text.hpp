// Untrusted text on its way into a log line or a reply: an address, a key or a reason that came
// from the network or from a file may carry control characters (a forged second log line, a
// broken SMTP reply), bytes a terminal interprets, or be very long. Every program passes such
// text through printable() (a reply, a terminal: ASCII only) or loggable() (a log line: UTF-8
// too) and nothing else, so there is one rule for what reaches each.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace coexist {

// Longest piece of untrusted text copied into one log field or reply, in bytes.
inline constexpr std::size_t kMaxLoggedFieldBytes = 256;

// `untrusted` with every byte outside printable US-ASCII (0x20..0x7e: control bytes, DEL, and
// 8-bit bytes, which SMTP replies may not carry) replaced by '?'. When it is longer than
// `max_bytes`, the first `max_bytes` are kept and "..." appended, so the result is at most
// max_bytes + 3 bytes. Throws only std::bad_alloc.
std::string printable(std::string_view untrusted, std::size_t max_bytes = kMaxLoggedFieldBytes);

// printable() for a log line, which may carry UTF-8 where a reply may not: a well-formed UTF-8
// character outside ASCII is kept as it is, as Postfix logs an SMTPUTF8 address
// (smtputf8_enable = yes; src/util/printable.c), so that a grep for "jürgen@" finds it. Still
// '?', one for each byte or character: C0 and C1 control characters and DEL; bytes that are
// not well-formed UTF-8 (RFC 3629 section 4: overlong forms, surrogates, beyond U+10FFFF, a
// sequence cut short); and the characters that would make a terminal show the line otherwise
// than it is: U+2028 and U+2029 (line and paragraph separators), the bidirectional
// embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069), the default-ignorable
// code points (zero-width space and joiners, direction marks, soft hyphen, byte order mark,
// variation selectors, tags: a name with one shows as a name without) and the noncharacters.
// Longer than
// `max_bytes`: cut before the first character that does not fit whole, and "..." appended.
// Throws only std::bad_alloc.
std::string loggable(std::string_view untrusted, std::size_t max_bytes = kMaxLoggedFieldBytes);

// loggable() for a log field written between angle brackets (`to=<...>`, `new=<...>`): '<' and
// '>' become '?' too, so the field ends at its first '>' whatever the text holds. A quoted
// local part may hold anything, `"x>, action=rewrite, new=<evil@...> x"@contoso.com` included;
// copied as it is (as Postfix logs it), it would put a forged action= before the real one.
// Throws only std::bad_alloc.
std::string loggable_bracketed(std::string_view untrusted, std::size_t max_bytes = kMaxLoggedFieldBytes);

// loggable() for a log field written between double quotes (`detail="..."`): '"' and '\' get a
// backslash before them, as in a quoted-string (RFC 5322 section 3.2.4), so the field ends at
// its first unescaped '"'. The result may be up to twice max_bytes, plus 3. Throws only
// std::bad_alloc.
std::string loggable_quoted(std::string_view untrusted, std::size_t max_bytes = kMaxLoggedFieldBytes);

}  // namespace coexist
