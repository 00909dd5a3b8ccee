#include "import_stage.hpp"

#include <cstdint>

namespace coexist::tool {

namespace {

// The index (Scratch::index), kept to the end: a prefix byte, then the address.
constexpr char kRowPrefix = 'u';    // the user's row: kStaged or kWithdrawn, be64(line)
constexpr char kBadPrefix = 'b';    // a bad row's user: ""
constexpr char kAliasPrefix = 'a';  // be64(line of the claiming row), then its user
constexpr char kStaged = 'r', kWithdrawn = 'w';
// The rows (Scratch::rows), emptied as they are imported: address -> be64(line), then the row.
constexpr auto kIndex = MapTxn::Scratch::index, kRows = MapTxn::Scratch::rows;

std::string scratch_key(char prefix, std::string_view address) {
    std::string k(1, prefix);
    k.append(address);
    return k;
}

void put_be(std::string& out, std::uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads big-endian numbers and length-prefixed strings from a value this file wrote.
struct Reader {
    std::string_view in;
    std::uint64_t number(std::size_t bytes) {
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
        in.remove_prefix(bytes);
        return v;
    }
    std::string text() {
        const auto n = static_cast<std::size_t>(number(4));
        std::string s(in.substr(0, n));
        in.remove_prefix(n);
        return s;
    }
};

void put_text(std::string& out, std::string_view s) {
    put_be(out, s.size(), 4);
    out.append(s);
}

std::string encode_row(const ImportRow& row) {
    std::string out;
    put_be(out, row.line, 8);
    const UserRecord& r = row.record;
    out.push_back(static_cast<char>(r.state));
    out.push_back(r.pending_state ? static_cast<char>(1 + static_cast<int>(*r.pending_state)) : '\0');
    put_be(out, static_cast<std::uint64_t>(r.pending_at), 8);
    put_text(out, r.target);
    put_text(out, r.batch);
    put_be(out, row.aliases.size(), 4);
    for (const auto& a : row.aliases) put_text(out, a);
    return out;
}

ImportRow decode_row(std::string_view key, std::string_view value) {
    Reader in{value};
    ImportRow row;
    row.key = std::string(key);
    row.line = static_cast<std::size_t>(in.number(8));
    row.record.state = static_cast<State>(in.number(1));
    if (const auto pending = in.number(1)) row.record.pending_state = static_cast<State>(pending - 1);
    row.record.pending_at = static_cast<std::int64_t>(in.number(8));
    row.record.target = in.text();
    row.record.batch = in.text();
    row.aliases.resize(static_cast<std::size_t>(in.number(4)));
    for (auto& a : row.aliases) a = in.text();
    return row;
}

std::size_t line_of(std::string_view value) { return static_cast<std::size_t>(Reader{value}.number(8)); }

}  // namespace

std::optional<std::size_t> StagedRows::add(const ImportRow& row) {
    std::string index(1, kStaged);
    put_be(index, row.line, 8);
    if (const auto first = t_.scratch_insert(kIndex, scratch_key(kRowPrefix, row.key), index))
        return line_of(first->substr(1));
    t_.scratch_put(kRows, row.key, encode_row(row));
    ++rows_;
    return std::nullopt;
}

void StagedRows::withdraw(const ImportRow& row) {
    std::string index(1, kWithdrawn);
    put_be(index, row.line, 8);
    t_.scratch_put(kIndex, scratch_key(kRowPrefix, row.key), index);
    t_.scratch_del(kRows, row.key);
    --rows_;
}

void StagedRows::note_bad_row(std::string_view key) { t_.scratch_put(kIndex, scratch_key(kBadPrefix, key), ""); }

std::optional<std::size_t> StagedRows::claim_alias(std::string_view alias, std::size_t line,
                                                   std::string_view primary) {
    std::string value;
    put_be(value, line, 8);
    value.append(primary);
    if (const auto first = t_.scratch_insert(kIndex, scratch_key(kAliasPrefix, alias), value)) return line_of(*first);
    return std::nullopt;
}

std::optional<std::size_t> StagedRows::user_line(std::string_view key) {
    const auto v = t_.scratch_get(kIndex, scratch_key(kRowPrefix, key));
    if (!v) return std::nullopt;
    return line_of(v->substr(1));
}

bool StagedRows::in_file(std::string_view key) {
    return t_.scratch_get(kIndex, scratch_key(kRowPrefix, key)) || t_.scratch_get(kIndex, scratch_key(kBadPrefix, key));
}

void StagedRows::drain_rows(const std::function<void(const ImportRow&)>& visit) {
    t_.drain_scratch(kRows, [&](std::string_view k, std::string_view v) { visit(decode_row(k, v)); });
}

void StagedRows::for_each_alias(const std::function<void(std::string_view, std::string_view)>& visit) {
    t_.for_each_scratch(kIndex, std::string(1, kAliasPrefix), [&](std::string_view k, std::string_view v) {
        const std::string alias(k.substr(1)), primary(v.substr(8));  // copies: visit writes
        visit(alias, primary);
        return true;
    });
}

}  // namespace coexist::tool
