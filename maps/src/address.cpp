#include "coexist/address.hpp"

#include <algorithm>

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

}  // namespace

std::string lowercase_ascii(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    return out;
}

std::optional<Address> parse_address(std::string_view raw) {
    while (!raw.empty() && is_space(raw.front())) raw.remove_prefix(1);
    while (!raw.empty() && is_space(raw.back())) raw.remove_suffix(1);
    if (!raw.empty() && raw.front() == '<') {
        if (raw.size() < 2 || raw.back() != '>') return std::nullopt;
        raw = raw.substr(1, raw.size() - 2);
    } else if (!raw.empty() && raw.back() == '>') {
        return std::nullopt;
    }
    if (raw.empty() || raw.size() > kMaxAddressLength) return std::nullopt;
    if (std::any_of(raw.begin(), raw.end(), [](char c) { return is_control(static_cast<unsigned char>(c)); }))
        return std::nullopt;

    // The last '@' separates the domain: a quoted local part may itself contain '@'.
    const auto at = raw.rfind('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == raw.size()) return std::nullopt;
    std::string_view local = raw.substr(0, at);
    std::string_view domain = raw.substr(at + 1);
    if (domain.back() == '.') domain.remove_suffix(1);  // "contoso.com." is contoso.com
    if (!valid_domain(domain)) return std::nullopt;
    // A quoted local part must be one quoted string; stray '<', '>' or unquoted spaces are not
    // an address.
    if (local.front() == '"') {
        if (local.size() < 2 || local.back() != '"') return std::nullopt;
    } else if (local.find_first_of("<> \t\"") != std::string_view::npos) {
        return std::nullopt;
    }
    return Address{std::string(local), lowercase_ascii(domain)};
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
