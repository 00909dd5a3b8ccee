#include "directory_sync.hpp"

#include <ldap.h>

#include <ctime>
#include <fmt/format.h>

#include "coexist/accounts.hpp"
#include "coexist/map_reader.hpp"

namespace coexist::directory {

namespace {

// Thrown out of the write transaction to roll it back after a dry run printed its changes.
struct DryRunDone {};

std::vector<std::string> read_group(LdapSession& session, const std::string& dn, const char* key) {
    std::vector<std::string> members;
    bool found = false;
    try {
        session.search_paged(dn, LDAP_SCOPE_BASE, "(objectClass=*)", group_attributes(), [&](Entry&& e) {
            found = true;
            members = group_member_values(e);
        });
    } catch (const DirectoryError& e) {
        if (e.transient()) throw;
        throw DirectoryError(fmt::format("{} {}: {}", key, dn, e.what()), false);
    }
    if (!found) throw DirectoryError(fmt::format("{} {} is not readable (no entry returned)", key, dn), false);
    return members;
}

}  // namespace

ChangeContext sync_context(const std::string& uri) {
    return ChangeContext{current_user_name(), fmt::format("sync {}", uri), static_cast<std::int64_t>(::time(nullptr))};
}

Membership read_membership(const DirectoryConfig& config, LdapSession& session) {
    Membership m;
    if (!config.migrated_group.empty())
        m.assign(Membership::Group::migrated, read_group(session, config.migrated_group, "migrated_group"));
    if (!config.dual_group.empty()) m.assign(Membership::Group::dual, read_group(session, config.dual_group, "dual_group"));
    return m;
}

std::string skipped_reference_warning(const DirectoryConfig& d, std::string_view url) {
    return fmt::format("a continuation reference under {} was not followed: {}: the users held there are not "
                       "read (coexist reads the servers of uri only)", d.base, url);
}

SyncCounts full_sync(const Config& config, MapStore& store, LdapSession& session, const SyncOptions& options,
                     const std::function<void(const std::string&)>& change) {
    const DirectoryConfig& d = config.directory;
    const Membership membership = read_membership(d, session);
    const ChangeContext context = sync_context(session.uri());
    SyncCounts counts;
    try {
        store.write(context, [&](MapTxn& txn) {
            counts = SyncCounts{};  // MapStore reruns this after growing a full map
            ViewWriter writer(txn, counts, change);
            session.search_paged(d.base, LDAP_SCOPE_SUBTREE, d.filter, person_attributes(d), [&](Entry&& entry) {
                ++counts.entries;
                Classified c = classify(config, entry, membership);
                for (auto& w : c.warnings) counts.warn(std::move(w));
                if (c.user) writer.upsert(*c.user);
            });
            for (const auto& url : session.take_skipped_references()) counts.warn(skipped_reference_warning(d, url));
            writer.remove_unseen(d, options.force, options.earlier_removed, options.earlier_demoted);
            txn.put_meta(meta::kDirectorySyncedAt, std::to_string(context.time));
            txn.put_meta(meta::kDirectoryUri, session.uri());
            txn.put_meta(meta::kDirectoryHeldRemovals, "0");
            // The map is now the directory as read, not as of a follower's cookie: a cookie left
            // here may be one the server no longer knows (a directory restored from an older
            // backup answers it "consumer state is newer than provider"), so the next follower
            // reads in full. A follower running beside this sync stores its own cookie again.
            txn.put_meta(meta::kDirectoryCookie, "");
            if (options.dry_run) throw DryRunDone{};
        });
    } catch (const DryRunDone&) {
    }
    return counts;
}

}  // namespace coexist::directory
