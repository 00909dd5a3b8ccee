// RFC 3461 xtext, the encoding of the ORCPT= value: every byte outside '!'..'~', and '+' and
// '=', becomes "+HH" (upper-case hex).
#pragma once

#include <string>
#include <string_view>

namespace coexist::milter {

std::string xtext_encode(std::string_view text);

// True when `text` is well-formed xtext: printable US-ASCII except '=', and every '+' followed
// by two upper-case hex digits (RFC 3461 section 4).
bool is_xtext(std::string_view text);

}  // namespace coexist::milter
