#include "dump_format.hpp"

#include <nettle/base64.h>

namespace coexist::tool::dump_format {

bool valid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const auto b0 = static_cast<unsigned char>(s[i]);
        if (b0 < 0x80) {
            ++i;
            continue;
        }
        // RFC 3629 section 4: the second byte's range depends on the first (no overlong forms,
        // no surrogates, nothing above U+10FFFF).
        std::size_t n;
        unsigned char lo = 0x80, hi = 0xbf;
        if (b0 >= 0xc2 && b0 <= 0xdf) n = 1;
        else if (b0 == 0xe0) { n = 2; lo = 0xa0; }
        else if (b0 >= 0xe1 && b0 <= 0xec) n = 2;
        else if (b0 == 0xed) { n = 2; hi = 0x9f; }
        else if (b0 >= 0xee && b0 <= 0xef) n = 2;
        else if (b0 == 0xf0) { n = 3; lo = 0x90; }
        else if (b0 >= 0xf1 && b0 <= 0xf3) n = 3;
        else if (b0 == 0xf4) { n = 3; hi = 0x8f; }
        else return false;
        if (s.size() - i <= n) return false;
        const auto b1 = static_cast<unsigned char>(s[i + 1]);
        if (b1 < lo || b1 > hi) return false;
        for (std::size_t k = 2; k <= n; ++k) {
            const auto b = static_cast<unsigned char>(s[i + k]);
            if (b < 0x80 || b > 0xbf) return false;
        }
        i += n + 1;
    }
    return true;
}

Json text(std::string_view bytes) {
    if (valid_utf8(bytes)) return Json(std::string(bytes));
    std::string encoded(BASE64_ENCODE_RAW_LENGTH(bytes.size()), '\0');
    base64_encode_raw(reinterpret_cast<char*>(encoded.data()), bytes.size(),
                      reinterpret_cast<const std::uint8_t*>(bytes.data()));
    return Json{{"base64", encoded}};
}

std::optional<std::string> bytes_of(const Json& value) {
    if (value.is_string()) return value.get<std::string>();
    if (!value.is_object() || value.size() != 1 || !value.contains("base64") || !value["base64"].is_string())
        return std::nullopt;
    const auto& encoded = value["base64"].get_ref<const std::string&>();
    std::string out(BASE64_DECODE_LENGTH(encoded.size()), '\0');
    base64_decode_ctx ctx;
    base64_decode_init(&ctx);
    std::size_t n = out.size();
    if (!base64_decode_update(&ctx, &n, reinterpret_cast<std::uint8_t*>(out.data()), encoded.size(), encoded.data()) ||
        !base64_decode_final(&ctx))
        return std::nullopt;
    out.resize(n);
    return out;
}

}  // namespace coexist::tool::dump_format
