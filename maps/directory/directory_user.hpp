// The directory's view of one user (design 9): which entries are users, their canonical key,
// aliases, state, explicit target and batch, from the attributes and group membership.
// Pure functions over search results: no LDAP connection, no map.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coexist/config.hpp"
#include "coexist/record.hpp"
#include "key_hash.hpp"
#include "ldap_session.hpp"

namespace coexist::directory {

struct DirectoryUser {
    std::string key;                   // canonical user key (user_key.hpp)
    std::string dn;                    // normalized DN of the entry
    std::string entry_uuid;            // entryUUID, RFC 4530 string form (lowercase); may be empty
    State state = State::source;
    std::optional<std::string> target; // nullopt: target_attribute not configured (keep the map's)
    std::optional<std::string> batch;  // nullopt: batch_attribute not configured (keep the map's)
    std::vector<std::string> aliases;  // canonical keys in managed domains, sorted, without `key`
    // The entry's state or target could not be read (a typo in the directory): keep what the
    // map has rather than move the user's mail on a misspelling.
    bool keep_routing = false;
};

// The members of the migrated and dual groups (design 9), as hashes of their normalized DNs
// (key_hash.hpp: 16 bytes a member), sorted; a multiset, so that the follower can add and
// remove one spelling of a DN at a time.
class Membership {
public:
    enum class Group { migrated, dual };

    // Replaces a group's members by `raw_dns` (as the server sent them: normalized here).
    void assign(Group g, const std::vector<std::string>& raw_dns);
    void add(Group g, std::string_view raw_dn);
    void remove(Group g, std::string_view raw_dn);
    // `dn` normalized (normalize_dn).
    bool contains(Group g, std::string_view dn) const;
    // A fingerprint of both groups' members, to tell whether they changed.
    std::uint64_t fingerprint() const;

private:
    std::vector<Hash128>& of(Group g) { return g == Group::migrated ? migrated_ : dual_; }
    const std::vector<Hash128>& of(Group g) const { return g == Group::migrated ? migrated_ : dual_; }
    std::vector<Hash128> migrated_, dual_;
};

// The member DNs of a group entry as the server sent them (member, uniqueMember; a
// uniqueMember's optional "#'...'B" UID suffix dropped), sorted, duplicates removed.
std::vector<std::string> group_member_values(const Entry& group);
// The attributes of a group entry to request.
std::vector<std::string> group_attributes();

// The attributes of a person entry to request (address, aliases, state/target/batch when
// configured, memberOf for directories that maintain it, such as AD, and entryUUID).
std::vector<std::string> person_attributes(const DirectoryConfig& config);

struct Classified {
    std::optional<DirectoryUser> user;  // nullopt: the entry is not a user of a managed domain
    std::string skipped;                // why not, when nullopt
    std::vector<std::string> warnings;  // values ignored (bad alias, state, target, batch)
};

// An entry as a user (design 9): the first value of address_attribute in a managed domain is
// the primary address (further ones in managed domains become aliases). State from
// state_attribute, else dual_group, then migrated_group (listed as the group's member, or the
// group named in the entry's memberOf), else source. A state, target or batch attribute with
// several values that disagree is the directory's mistake: the map keeps what it had (the
// server may send values in any order, and relays must not pick differently), with a warning. Alias values may carry AD's "smtp:"
// prefix; values with another prefix ("X500:", "SIP:") and addresses outside the managed
// domains are ignored.
Classified classify(const Config& config, const Entry& entry, const Membership& membership);

// An address value as found in a directory: "SMTP:a@b" / "smtp:a@b" -> "a@b"; nullopt for a
// value with another type prefix ("X500:/o=...").
std::optional<std::string_view> smtp_value(std::string_view value);

}  // namespace coexist::directory
