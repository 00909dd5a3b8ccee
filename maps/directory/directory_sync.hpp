// `coexist-map sync` (design 9): one full read of the directory, and the map made equal to it
// in ONE write transaction, so the daemons see the old view or the new one, never half.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "coexist/config.hpp"
#include "coexist/map_store.hpp"
#include "directory_user.hpp"
#include "ldap_session.hpp"
#include "view_writer.hpp"

namespace coexist::directory {

struct SyncOptions {
    bool dry_run = false;  // run it all, print the changes, commit nothing
    bool force = false;    // apply removals beyond max_removals
    // A polling follower's earlier polls within max_removals' 60 s window: the users they
    // removed and moved back to the source count against this sync's limit (design 13.5).
    std::size_t earlier_removed = 0;
    std::size_t earlier_demoted = 0;
};

// Reads the members of migrated_group and dual_group (base searches on each group DN). A
// configured group that does not exist is a permanent DirectoryError: treating it as empty
// would move every migrated user back to the source.
Membership read_membership(const DirectoryConfig& config, LdapSession& session);

// Reads the groups, then the people (paged), and writes the view through a ViewWriter within
// one MapStore write transaction, recording the sync time and URI in the map's meta in that
// same transaction. `change` gets one line per change (see ViewWriter). Throws DirectoryError
// (nothing changed), RemovalLimitExceeded (nothing changed), MapUnavailable.
SyncCounts full_sync(const Config& config, MapStore& store, LdapSession& session, const SyncOptions& options,
                     const std::function<void(const std::string&)>& change = {});

// The warning for a continuation reference a search under the base met and did not follow: its
// users are on another server, and are not read (a one-shot sync's warnings, the follower's log).
std::string skipped_reference_warning(const DirectoryConfig& d, std::string_view url);

// The ChangeContext of the directory's writes: who = the running user, command = "sync URI".
ChangeContext sync_context(const std::string& uri);

}  // namespace coexist::directory
