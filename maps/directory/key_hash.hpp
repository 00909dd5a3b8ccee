// Compact sets of strings the directory code only needs to test membership of: the keys a full
// sync has visited, the member DNs of a group. Each string is kept as two independent 64-bit
// hashes (16 bytes, however long the string): a million users' keys take ~23 MB instead of
// ~80 MB of std::string nodes, and two different strings collide with odds of about 2^-128
// per pair, so a collision never decides a user's route in practice.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

namespace coexist::directory {

struct Hash128 {
    std::uint64_t a = 0, b = 0;
    bool operator==(const Hash128&) const = default;
    bool operator<(const Hash128& o) const { return a != o.a ? a < o.a : b < o.b; }
};

// FNV-1a, 64 bits: deterministic across processes (fingerprints stored in the map) and
// independent of std::hash's murmur (the second half of a Hash128). `h` continues a hash.
inline constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;
inline std::uint64_t fnv1a64(std::string_view s, std::uint64_t h = kFnvOffset) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

inline Hash128 hash128(std::string_view s) {
    return {static_cast<std::uint64_t>(std::hash<std::string_view>{}(s)), fnv1a64(s) | 1};  // b != 0 marks a used slot
}

// An open-addressing hash set of Hash128 (linear probing, grows at 70% load).
class Hash128Set {
public:
    // True when `h` was not in the set yet.
    bool insert(Hash128 h) {
        if ((size_ + 1) * 10 > slots_.size() * 7) grow();
        Hash128& slot = find_slot(slots_, h);
        if (slot.b != 0) return false;
        slot = h;
        ++size_;
        return true;
    }
    bool contains(Hash128 h) const {
        if (slots_.empty()) return false;
        return find_slot(const_cast<std::vector<Hash128>&>(slots_), h).b != 0;
    }
    std::size_t size() const { return size_; }

private:
    static Hash128& find_slot(std::vector<Hash128>& slots, Hash128 h) {
        const std::size_t mask = slots.size() - 1;
        for (std::size_t i = h.a & mask;; i = (i + 1) & mask)
            if (slots[i].b == 0 || slots[i] == h) return slots[i];
    }
    void grow() {
        std::vector<Hash128> bigger(slots_.empty() ? 1024 : slots_.size() * 2);
        for (const auto& h : slots_)
            if (h.b != 0) find_slot(bigger, h) = h;
        slots_.swap(bigger);
    }
    std::vector<Hash128> slots_;  // size a power of two; b == 0: empty
    std::size_t size_ = 0;
};

}  // namespace coexist::directory
