#include "import_stage.hpp"

#include <cstdint>
#include <stdexcept>

namespace coexist::tool {

namespace {

// The rows (Scratch::rows), kept to the end: address -> a staged row (kStaged, then the row) or
// a row taken back (kWithdrawn, then its line). Small values keep the scratch's pages few: it
// is the import's largest use of memory but for the map's own pages.
constexpr char kStaged = 'r', kWithdrawn = 'w';
// The index (Scratch::index), kept to the end: a prefix byte, then the address.
constexpr char kBadPrefix = 'b';    // a bad row's user: ""
constexpr char kAliasPrefix = 'a';  // be64(line of the claiming row), then its user
constexpr auto kIndex = MapTxn::Scratch::index, kRows = MapTxn::Scratch::rows;

std::string scratch_key(char prefix, std::string_view address) {
    std::string k(1, prefix);
    k.append(address);
    return k;
}

void put_be(std::string& out, std::uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// 7 bits a byte, the last byte's top bit clear: a line number or a length in one or two bytes.
void put_varint(std::string& out, std::uint64_t v) {
    while (v >= 0x80) {
        out.push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    out.push_back(static_cast<char>(v));
}

void put_text(std::string& out, std::string_view s) {
    put_varint(out, s.size());
    out.append(s);
}

// Reads what this file wrote. A value cut short is a bug here, not bad input: logic_error.
struct Reader {
    std::string_view in;
    void need(std::size_t n) const {
        if (in.size() < n) throw std::logic_error("import: a staged row cut short");
    }
    std::uint64_t number(std::size_t bytes) {
        need(bytes);
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < bytes; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
        in.remove_prefix(bytes);
        return v;
    }
    std::uint64_t varint() {
        std::uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
            need(1);
            const auto b = static_cast<unsigned char>(in.front());
            in.remove_prefix(1);
            v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
            if (!(b & 0x80)) return v;
        }
        throw std::logic_error("import: a staged row's number too long");
    }
    // Assigned, not returned: the strings of a row reused from the last one keep their buffers.
    void text(std::string& s) {
        const auto n = static_cast<std::size_t>(varint());
        need(n);
        s.assign(in.substr(0, n));
        in.remove_prefix(n);
    }
};

std::string encode_row(const ImportRow& row) {
    std::string out(1, kStaged);
    put_varint(out, row.line);
    const UserRecord& r = row.record;
    out.push_back(static_cast<char>(r.state));
    out.push_back(r.pending_state ? static_cast<char>(1 + static_cast<int>(*r.pending_state)) : '\0');
    if (r.pending_state) put_be(out, static_cast<std::uint64_t>(r.pending_at), 8);
    put_text(out, r.target);
    put_text(out, r.batch);
    put_varint(out, row.aliases.size());
    for (const auto& a : row.aliases) put_text(out, a);
    return out;
}

// A staged row's value (kStaged) into `row`, reusing its strings' buffers.
void decode_row(std::string_view key, std::string_view value, ImportRow& row) {
    Reader in{value.substr(1)};
    row.key.assign(key);
    row.line = static_cast<std::size_t>(in.varint());
    row.record.state = static_cast<State>(in.number(1));
    row.record.pending_state.reset();
    row.record.pending_at = 0;
    if (const auto pending = in.number(1)) {
        row.record.pending_state = static_cast<State>(pending - 1);
        row.record.pending_at = static_cast<std::int64_t>(in.number(8));
    }
    in.text(row.record.target);
    in.text(row.record.batch);
    row.aliases.resize(static_cast<std::size_t>(in.varint()));
    for (auto& a : row.aliases) in.text(a);
}

// The line of a row's value, staged or taken back: both start with the flag, then the line.
std::size_t line_of_row(std::string_view value) { return static_cast<std::size_t>(Reader{value.substr(1)}.varint()); }

std::size_t line_of_alias(std::string_view value) { return static_cast<std::size_t>(Reader{value}.number(8)); }

}  // namespace

std::optional<std::size_t> StagedRows::add(const ImportRow& row) {
    if (const auto first = t_.scratch_insert(kRows, row.key, encode_row(row))) return line_of_row(*first);
    ++rows_;
    return std::nullopt;
}

void StagedRows::withdraw(const ImportRow& row) {
    std::string value(1, kWithdrawn);
    put_varint(value, row.line);
    t_.scratch_put(kRows, row.key, value);
    --rows_;
}

void StagedRows::note_bad_row(std::string_view key) { t_.scratch_put(kIndex, scratch_key(kBadPrefix, key), ""); }

std::optional<std::size_t> StagedRows::claim_alias(std::string_view alias, std::size_t line,
                                                   std::string_view primary) {
    std::string value;
    put_be(value, line, 8);
    value.append(primary);
    if (const auto first = t_.scratch_insert(kIndex, scratch_key(kAliasPrefix, alias), value))
        return line_of_alias(*first);
    return std::nullopt;
}

std::optional<std::size_t> StagedRows::user_line(std::string_view key) {
    const auto v = t_.scratch_get(kRows, key);
    if (!v) return std::nullopt;
    return line_of_row(*v);
}

bool StagedRows::in_file(std::string_view key) {
    return t_.scratch_get(kRows, key) || t_.scratch_get(kIndex, scratch_key(kBadPrefix, key));
}

void StagedRows::for_each_row(const std::function<void(const ImportRow&)>& visit) {
    ImportRow row;
    t_.for_each_scratch(kRows, "", [&](std::string_view k, std::string_view v) {
        if (v.front() == kWithdrawn) return true;
        decode_row(k, v, row);  // a copy: visit writes, and LMDB's views last until a write
        visit(row);
        return true;
    });
}

void StagedRows::for_each_alias(const std::function<void(std::string_view, std::string_view)>& visit) {
    t_.for_each_scratch(kIndex, std::string(1, kAliasPrefix), [&](std::string_view k, std::string_view v) {
        const std::string alias(k.substr(1)), primary(v.substr(8));  // copies: visit writes
        visit(alias, primary);
        return true;
    });
}

}  // namespace coexist::tool
