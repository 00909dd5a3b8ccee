// RFC 3461 xtext, the encoding of the ORCPT= value: every byte outside '!'..'~', and '+' and
// '=', becomes "+HH" (upper-case hex).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace coexist::milter {

std::string xtext_encode(std::string_view text);

// True when `text` is well-formed xtext: printable US-ASCII except '=', and every '+' followed
// by two upper-case hex digits (RFC 3461 section 4).
bool is_xtext(std::string_view text);

// The address an RFC 6533 (section 3) "utf-8" ORCPT value stands for: utf-8-addr-xtext or
// utf-8-addr-unitext, i.e. printable US-ASCII but '+', '=' and '\', each "\x{HEX}" (one to
// six hex digits, a Unicode scalar value) as that character in UTF-8, and, in unitext, UTF-8
// characters as they are. nullopt when malformed: a raw '+', '=' or '\', a bad escape, a
// control or space, or bytes that are not well-formed UTF-8.
std::optional<std::string> decode_utf8_addr_text(std::string_view text);

// The value to hand Postfix's cleanup (smfi_addrcpt_par) for a decoded "utf-8" address, so
// that it stores that address: Postfix 3.7 (Debian 12) xtext-decodes every ORCPT type there
// (cleanup_milter.c, cleanup_add_rcpt_par); 3.12 uxtext-decodes the utf-8 type there. The
// address as it is satisfies both when it holds no '+' and no "\x{"; else the '+' (and any
// space) become "+HH", which Postfix 3.7 reads right.
std::string utf8_addr_for_cleanup(std::string_view address);

}  // namespace coexist::milter
