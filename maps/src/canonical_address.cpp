#include "coexist/canonical_address.hpp"

#include <unicode/ucasemap.h>
#include <unicode/utypes.h>

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "coexist/address.hpp"

namespace coexist {

namespace {

// is_822_dot_string() of src/global/quote_822_local.c with QUOTE_FLAG_8BITCLEAN (the
// QUOTE_FLAG_DEFAULT that find_addr() queries with): atoms separated by single dots, no
// leading or trailing dot; 8-bit bytes are ordinary text.
bool is_dot_string(std::string_view local) {
    if (local.empty() || local.front() == '.' || local.back() == '.') return false;
    for (std::size_t i = 0; i < local.size(); ++i) {
        const auto ch = static_cast<unsigned char>(local[i]);
        if (ch == '.' && i + 1 < local.size() && local[i + 1] == '.') return false;
        if (ch == ' ' || ch < 0x20 || ch == 0x7f) return false;
        switch (ch) {
            case '(': case ')': case '<': case '>': case '@': case ',': case ';': case ':':
            case '\\': case '"': case '[': case ']':
                return false;
            default:
                break;
        }
    }
    return true;
}

struct CaseMapClose {
    void operator()(UCaseMap* m) const noexcept { ucasemap_close(m); }
};

// One folding map for the process, as casefold.c keeps one: ucasemap_utf8FoldCase() takes it
// const, so all threads may share it.
const UCaseMap& case_map() {
    static const std::unique_ptr<UCaseMap, CaseMapClose> map = [] {
        UErrorCode error = U_ZERO_ERROR;
        std::unique_ptr<UCaseMap, CaseMapClose> m(ucasemap_open("en_US", U_FOLD_CASE_DEFAULT, &error));
        if (U_FAILURE(error) || !m) throw std::runtime_error(std::string("ucasemap_open: ") + u_errorName(error));
        return m;
    }();
    return *map;
}

}  // namespace

std::string quote_local_part(std::string_view internal_local) {
    if (is_dot_string(internal_local)) return std::string(internal_local);
    // make_822_quoted_string(): quotes around it, a backslash before '"', '\' and CR (8-bit
    // text is left alone under QUOTE_FLAG_8BITCLEAN).
    std::string out = "\"";
    for (char c : internal_local) {
        if (c == '"' || c == '\\' || c == '\r') out.push_back('\\');
        out.push_back(c);
    }
    out.push_back('"');
    return out;
}

std::string fold_case(std::string_view text) {
    if (is_ascii(text)) return lowercase_ascii(text);
    // Full case folding can grow the text (ß -> ss, ŉ -> ʼn): ask ICU for the size once.
    std::string out(text.size() * 3 + 8, '\0');
    for (int attempt = 0; attempt < 2; ++attempt) {
        UErrorCode error = U_ZERO_ERROR;
        const int32_t n = ucasemap_utf8FoldCase(&case_map(), out.data(), static_cast<int32_t>(out.size()),
                                                text.data(), static_cast<int32_t>(text.size()), &error);
        if (U_SUCCESS(error) || error == U_STRING_NOT_TERMINATED_WARNING) {
            out.resize(static_cast<std::size_t>(n));
            return out;
        }
        if (error != U_BUFFER_OVERFLOW_ERROR) throw std::runtime_error(std::string("ucasemap_utf8FoldCase: ") + u_errorName(error));
        out.assign(static_cast<std::size_t>(n) + 1, '\0');
    }
    throw std::runtime_error("ucasemap_utf8FoldCase: the folded text keeps growing");
}

std::string canonical_key(std::string_view internal_local, std::string_view domain) {
    if (is_ascii(internal_local) && is_dot_string(internal_local)) {
        // What the general way below gives for such a local part (no quotes to add, ASCII case
        // folding), built in one allocation: every lookup of the daemons comes here.
        std::string key;
        key.reserve(internal_local.size() + 1 + domain.size());
        key.append(internal_local).push_back('@');
        key.append(domain);
        for (char& c : key)
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        return key;
    }
    std::string key = fold_case(quote_local_part(internal_local));
    key.push_back('@');
    key.append(lowercase_ascii(domain));
    return key;
}

std::optional<std::string> canonical_address(std::string_view raw) {
    const auto a = parse_address(raw);
    if (!a) return std::nullopt;
    return canonical_key(a->local, a->domain);
}

std::string external_form(std::string_view internal_address) {
    const auto at = internal_address.rfind('@');
    if (at == std::string_view::npos || at == 0) return std::string(internal_address);
    return quote_local_part(internal_address.substr(0, at)) + std::string(internal_address.substr(at));
}

std::optional<Extension> strip_extension(std::string_view internal_local, std::string_view delimiters) {
    if (delimiters.empty()) return std::nullopt;
    const auto pos = internal_local.find_first_of(delimiters);
    // split_addr_internal(): "Do not split the address if the result would have a null
    // localpart."
    if (pos == std::string_view::npos || pos == 0) return std::nullopt;
    return Extension{internal_local.substr(0, pos), internal_local.substr(pos)};
}

}  // namespace coexist
