// Fuzz target: what the milter reads from the SMTP client and writes back to Postfix. The input
// is lines: the RCPT address as received (argv[0] of xxfi_envrcpt), then its ESMTP parameters
// (argv[1..]) up to an empty line, then the header names of the message.
//
// Checked against a simple model, not just "does not crash":
//  - parse_rcpt_params keeps exactly the first well-formed NOTIFY= and ORCPT= (RFC 3461; an
//    RFC 6533 utf-8 ORCPT decoded, and handed on in the form Postfix 3.7's cleanup decodes
//    back to that address);
//  - the parameters of an added recipient are one or two space-separated tokens, printable
//    but for the UTF-8 of a utf-8 ORCPT (Postfix refuses the whole added recipient over a bad
//    one), and the ORCPT we make decodes back to the address the sender wrote;
//  - the trace header count equals the case-insensitive matches, and the trace header value
//    carries host, queue id and a date that reads back to the same second;
//  - replies and log lines stay one bounded line with '%' doubled for libmilter.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "esmtp_params.hpp"
#include "message_plan.hpp"
#include "replies.hpp"
#include "trace_header.hpp"
#include "xtext.hpp"

namespace {

using namespace coexist::milter;

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

// The model of RFC 3461's NOTIFY value: NEVER, or a list of SUCCESS, FAILURE, DELAY.
bool model_notify(std::string_view value) {
    const std::string v = lower(value);
    if (v == "never") return true;
    std::size_t start = 0;
    while (true) {
        const std::size_t comma = v.find(',', start);
        const std::string item = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (item != "success" && item != "failure" && item != "delay") return false;
        if (comma == std::string::npos) return true;
        start = comma + 1;
    }
}

std::optional<std::string> xtext_decode(std::string_view x) {
    std::string out;
    for (std::size_t i = 0; i < x.size(); ++i) {
        if (x[i] != '+') {
            out.push_back(x[i]);
            continue;
        }
        if (i + 2 >= x.size()) return std::nullopt;
        out.push_back(static_cast<char>(std::stoi(std::string(x.substr(i + 1, 2)), nullptr, 16)));
        i += 2;
    }
    return out;
}

// The value of `keyword=` in `arg`, keyword compared case-insensitively.
std::optional<std::string_view> value_of(std::string_view arg, std::string_view keyword) {
    if (arg.size() <= keyword.size() || arg[keyword.size()] != '=') return std::nullopt;
    if (lower(arg.substr(0, keyword.size())) != lower(keyword)) return std::nullopt;
    return arg.substr(keyword.size() + 1);
}

// What cleanup (Postfix 3.7: xtext for every type) stores for an ORCPT value we hand it, past
// its "type;".
std::optional<std::string> stored_by_cleanup(std::string_view value) {
    const std::size_t semi = value.find(';');
    if (semi == std::string_view::npos) return std::nullopt;
    return xtext_decode(value.substr(semi + 1));
}

bool is_ascii_text(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// The model of one ORCPT value's fate: a utf-8 one becomes the address it stands for, typed
// rfc822 when that is all ASCII; any other type is kept when it is xtext.
std::optional<std::string> model_orcpt(std::string_view value) {
    const std::size_t semi = value.find(';');
    if (semi != std::string_view::npos && lower(value.substr(0, semi)) == "utf-8") {
        const auto address = decode_utf8_addr_text(value.substr(semi + 1));
        if (!address) return std::nullopt;
        // No control character comes out of the decoder (a space may: a quoted local part).
        for (const unsigned char c : *address)
            if (c < 0x20 || c == 0x7f) __builtin_trap();
        return is_ascii_text(*address) ? "rfc822;" + xtext_encode(*address) : "utf-8;" + utf8_addr_for_cleanup(*address);
    }
    if (!is_valid_orcpt(value)) return std::nullopt;
    return std::string(value);
}

void check_params(std::string_view as_received, const std::vector<std::string>& args) {
    const RcptParams got = parse_rcpt_params(args);
    std::optional<std::string> notify, orcpt;
    for (const auto& a : args) {
        if (auto v = value_of(a, "NOTIFY"); v && !notify && model_notify(*v)) notify = std::string(*v);
        else if (auto o = value_of(a, "ORCPT"); o && !orcpt) orcpt = model_orcpt(*o);
    }
    if (got.notify != notify || got.orcpt != orcpt) __builtin_trap();
    // A utf-8 ORCPT is stored by cleanup as the address it stands for.
    for (const auto& a : args) {
        const auto o = value_of(a, "ORCPT");
        if (!o) continue;
        if (model_orcpt(*o)) {
            const std::size_t semi = o->find(';');
            if (lower(o->substr(0, semi)) == "utf-8" &&
                stored_by_cleanup(*got.orcpt) != decode_utf8_addr_text(o->substr(semi + 1)))
                __builtin_trap();
            break;
        }
    }
    if (got.notify && !is_valid_notify(*got.notify)) __builtin_trap();

    const std::string_view original = strip_brackets(as_received);
    if (original.data() < as_received.data() ||
        original.data() + original.size() > as_received.data() + as_received.size())
        __builtin_trap();

    const std::string out = added_recipient_params(got, original);
    std::vector<std::string_view> tokens;
    for (std::string_view rest = out; !rest.empty();) {
        const std::size_t sp = rest.find(' ');
        tokens.push_back(rest.substr(0, sp));
        if (sp == std::string_view::npos) break;
        rest.remove_prefix(sp + 1);
        if (rest.empty()) __builtin_trap();  // trailing space
    }
    if (tokens.empty() || tokens.size() > 2 || tokens.size() != (got.notify ? 2u : 1u)) __builtin_trap();
    const bool utf8_orcpt = tokens.back().substr(0, 12) == "ORCPT=utf-8;";
    for (const auto t : tokens)
        for (const unsigned char c : t)
            if (c <= 0x20 || c == 0x7f || (c > 0x7f && !(utf8_orcpt && t == tokens.back()))) __builtin_trap();
    if (got.notify && tokens[0] != "NOTIFY=" + *got.notify) __builtin_trap();
    const std::string_view orcpt_token = tokens.back();
    if (orcpt_token.substr(0, 6) != "ORCPT=") __builtin_trap();
    const std::string_view value = orcpt_token.substr(6);
    // An empty original ("<>") cannot reach RCPT: Postfix refuses it before the milter sees it.
    if (!utf8_orcpt && !is_valid_orcpt(value) && !(original.empty() && value == "rfc822;")) __builtin_trap();
    if (got.orcpt) {
        if (value != *got.orcpt) __builtin_trap();
    } else {
        // The original itself: xtext when all ASCII, else typed utf-8; cleanup stores it back.
        if (value.substr(0, is_ascii_text(original) ? 7 : 6) != (is_ascii_text(original) ? "rfc822;" : "utf-8;"))
            __builtin_trap();
        const auto decoded = stored_by_cleanup(value);
        if (!decoded || *decoded != original) __builtin_trap();
        if (is_ascii_text(original) && xtext_encode(original) != value.substr(7)) __builtin_trap();
    }
}

void check_one_reply_line(std::string_view text) {
    if (text.size() > kMaxReplyText) __builtin_trap();
    std::size_t percent_run = 0;
    for (const unsigned char c : text) {
        if (c < 0x20 || c == 0x7f) __builtin_trap();
        if (c == '%') {
            ++percent_run;
        } else {
            if (percent_run % 2) __builtin_trap();
            percent_run = 0;
        }
    }
    if (percent_run % 2) __builtin_trap();
}

void check_headers(const std::vector<std::string_view>& names, std::uint64_t seed) {
    MessagePlan plan;
    unsigned expected = 0;
    for (const auto n : names) {
        plan.saw_header(n);
        if (is_trace_header(n) != (lower(n) == "x-coexist-trace")) __builtin_trap();
        if (is_trace_header(n)) ++expected;
    }
    if (plan.trace_count() != expected) __builtin_trap();
    if (plan.managed() || plan.exceeds_loop_limit(0)) __builtin_trap();  // no recipient yet

    // The trace header value: the host as given, the queue id made safe for a header (letters
    // and digits kept, nothing else, bounded), then a date that reads back. Times from 1970 to
    // 9999, the range a clock can give.
    const std::string_view host = names.empty() ? "relay.example" : names.front();
    const std::string_view qid = names.size() < 2 ? "4AbC" : names[1];
    const std::string safe_qid = header_safe_queue_id(qid);
    // Kept as it is exactly when it is letters and digits only, at most the bound (a '?' is kept
    // as '?' by the filter, but is no part of a queue id).
    const bool letters_and_digits =
        qid.size() <= kMaxHeaderQueueIdBytes &&
        std::all_of(qid.begin(), qid.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; });
    if (is_header_safe_queue_id(qid) != letters_and_digits) __builtin_trap();
    if (safe_qid.size() != std::min(qid.size(), kMaxHeaderQueueIdBytes)) __builtin_trap();
    for (std::size_t i = 0; i < safe_qid.size(); ++i)
        if (safe_qid[i] != qid[i] && (safe_qid[i] != '?' || std::isalnum(static_cast<unsigned char>(qid[i])))) __builtin_trap();
    const auto when = static_cast<std::time_t>(seed % 253402300800ULL);
    const std::string v = trace_header_value(host, qid, when);
    const std::string prefix = std::string(host) + "; id=" + safe_qid + "; ";
    if (v.compare(0, prefix.size(), prefix) != 0) __builtin_trap();
    std::tm tm{};
    const char* end = ::strptime(v.c_str() + prefix.size(), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    if (end == nullptr || *end != '\0' || ::timegm(&tm) != when) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> lines;
    for (std::string_view rest = input;;) {
        const std::size_t nl = rest.find('\n');
        lines.push_back(rest.substr(0, nl));
        if (nl == std::string_view::npos) break;
        rest.remove_prefix(nl + 1);
    }
    const std::string_view as_received = lines[0];
    std::vector<std::string> args;
    std::size_t i = 1;
    for (; i < lines.size() && !lines[i].empty(); ++i) args.emplace_back(lines[i]);
    const std::vector<std::string_view> headers(lines.begin() + static_cast<std::ptrdiff_t>(std::min(i + 1, lines.size())),
                                                lines.end());

    check_params(as_received, args);

    std::uint64_t seed = 1469598103934665603ULL;  // FNV-1a of the input: a time to format
    for (const unsigned char c : input) seed = (seed ^ c) * 1099511628211ULL;
    check_headers(headers, seed);

    const std::string_view detail = args.empty() ? std::string_view() : std::string_view(args.front());
    check_one_reply_line(unknown_recipient_reply(as_received, detail).text);
    check_one_reply_line(lookup_failure_reply(as_received).text);
    check_one_reply_line(message_tempfail_reply(detail).text);
    const coexist::RoutingDecision d{coexist::Action::rewrite, std::string(detail), std::string(detail)};
    const std::string line = decision_log_line(headers.empty() ? "NOQUEUE" : headers.front(), as_received, d);
    if (line.empty()) __builtin_trap();
    return 0;
}
