#include "coexist/record.hpp"

namespace coexist {

std::string_view to_string(State s) {
    switch (s) {
        case State::source: return "source";
        case State::migrated: return "migrated";
        case State::dual: return "dual";
    }
    return "?";
}

std::string_view to_string(Owner o) { return o == Owner::directory ? "directory" : "admin"; }

std::optional<State> parse_state(std::string_view s) {
    // Case-insensitive: "Migrated" is what a spreadsheet's autocapitalisation makes of it.
    const auto is = [s](std::string_view name) {
        if (s.size() != name.size()) return false;
        for (std::size_t i = 0; i < s.size(); ++i) {
            char c = s[i];
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
            if (c != name[i]) return false;
        }
        return true;
    };
    if (is("source")) return State::source;
    if (is("migrated")) return State::migrated;
    if (is("dual")) return State::dual;
    return std::nullopt;
}

namespace {

void put_u16(std::string& out, std::size_t v) {
    out.push_back(static_cast<char>((v >> 8) & 0xff));
    out.push_back(static_cast<char>(v & 0xff));
}

void put_field(std::string& out, std::string_view field) {
    // Fields are bounded by the address and batch limits long before 64 KiB.
    const std::size_t n = std::min<std::size_t>(field.size(), 0xffff);
    put_u16(out, n);
    out.append(field.substr(0, n));
}

// Reads from a byte view with bounds checks; any overrun marks the reader failed.
class ByteReader {
public:
    explicit ByteReader(std::string_view b) : bytes_(b) {}
    bool ok() const { return ok_; }
    bool at_end() const { return pos_ == bytes_.size(); }

    std::uint64_t uint(std::size_t width) {
        if (!ok_ || bytes_.size() - pos_ < width) { ok_ = false; return 0; }
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < width; ++i)
            v = (v << 8) | static_cast<unsigned char>(bytes_[pos_++]);
        return v;
    }
    std::string field() {
        const std::size_t n = uint(2);
        if (!ok_ || bytes_.size() - pos_ < n) { ok_ = false; return {}; }
        std::string s(bytes_.substr(pos_, n));
        pos_ += n;
        return s;
    }

private:
    std::string_view bytes_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

}  // namespace

bool UserRecord::apply_due(std::int64_t now) {
    if (!pending_due(now)) return false;
    const State next = *pending_state;
    pending_state.reset();
    pending_at = 0;
    if (owner == Owner::directory)
        override_state = next == state ? std::nullopt : std::optional<State>(next);
    else
        state = next;
    return true;
}

namespace {

void put_u64(std::string& out, std::uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xff));
}

}  // namespace

std::string encode(const UserRecord& r) {
    const bool v3 = r.pending_state.has_value();
    const bool v2 = v3 || r.owner == Owner::directory || r.override_state || !r.dn.empty() || !r.entry_uuid.empty();
    std::string out;
    out.reserve(30 + r.target.size() + r.batch.size() + r.dn.size());
    out.push_back(static_cast<char>(v3 ? kRecordVersionScheduled : v2 ? kRecordVersionOwned : kRecordVersion));
    out.push_back(static_cast<char>(r.state));
    put_u64(out, static_cast<std::uint64_t>(r.changed));
    if (v2) {
        const unsigned flags = (r.owner == Owner::directory ? 1u : 0u) | (r.override_state ? 2u : 0u) |
                               (r.pending_state ? 4u : 0u);
        out.push_back(static_cast<char>(flags));
        if (r.override_state) out.push_back(static_cast<char>(*r.override_state));
        if (r.pending_state) {
            out.push_back(static_cast<char>(*r.pending_state));
            put_u64(out, static_cast<std::uint64_t>(r.pending_at));
        }
    }
    put_field(out, r.target);
    put_field(out, r.batch);
    if (v2) {
        put_field(out, r.dn);
        put_field(out, r.entry_uuid);
    }
    return out;
}

std::optional<UserRecord> decode_user(std::string_view bytes) {
    ByteReader in(bytes);
    const auto version = in.uint(1);
    if (version != kRecordVersion && version != kRecordVersionOwned && version != kRecordVersionScheduled)
        return std::nullopt;
    const bool extended = version != kRecordVersion;
    const auto valid_state = [](std::uint64_t s) { return s <= static_cast<std::uint64_t>(State::dual); };
    const auto state = in.uint(1);
    if (!valid_state(state)) return std::nullopt;
    UserRecord r;
    r.state = static_cast<State>(state);
    r.changed = static_cast<std::int64_t>(in.uint(8));
    if (extended) {
        const auto flags = in.uint(1);
        // Bit 2 (a pending change) exists from v3 on: a v2 record claiming it is damaged.
        if (flags & ~(version == kRecordVersionScheduled ? 7u : 3u)) return std::nullopt;
        r.owner = (flags & 1u) ? Owner::directory : Owner::admin;
        if (flags & 2u) {
            const auto o = in.uint(1);
            if (!valid_state(o)) return std::nullopt;
            r.override_state = static_cast<State>(o);
        }
        if (flags & 4u) {
            const auto p = in.uint(1);
            if (!valid_state(p)) return std::nullopt;
            r.pending_state = static_cast<State>(p);
            r.pending_at = static_cast<std::int64_t>(in.uint(8));
        }
    }
    r.target = in.field();
    r.batch = in.field();
    if (extended) {
        r.dn = in.field();
        r.entry_uuid = in.field();
    }
    if (!in.ok() || !in.at_end()) return std::nullopt;
    return r;
}

}  // namespace coexist
