#include "follower.hpp"

#include <ldap.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <thread>
#include <set>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>

#include "coexist/address.hpp"
#include "coexist/log.hpp"
#include "coexist/map_reader.hpp"
#include "coexist/utc_time.hpp"
#include "key_hash.hpp"
#include "directory_sync.hpp"
#include "sync_controls.hpp"

namespace coexist::directory {

namespace {

using Clock = std::chrono::steady_clock;

struct MessageFree {
    void operator()(LDAPMessage* m) const { ldap_msgfree(m); }
};
using Message = std::unique_ptr<LDAPMessage, MessageFree>;

struct ControlsFree {
    void operator()(LDAPControl** c) const { ldap_controls_free(c); }
};
using Controls = std::unique_ptr<LDAPControl*, ControlsFree>;

// Thrown out of the follower's waits when the map's files were replaced (FilesWatch); follow()
// catches it and stops.
struct MapReplaced {};

// Looks from the follower's waits whether the map's data.mdb or lock.mdb was replaced
// (MapStore::files_replaced). A data.mdb renamed in alone is refused by every program for as
// long as any process keeps the old lock.mdb open (lmdb.cpp, Transaction), the daemons
// answering 4xx meanwhile: they let go within a second (MapWatcher), and so must the follower,
// not only at its next write (the heartbeat up to 30 s away, the next change, the next poll an
// `interval` away, or the end of a backoff).
class FilesWatch {
public:
    explicit FilesWatch(const MapStore& store) : store_(store) {}

    // Throws MapReplaced when they were replaced. Two stat calls.
    void look() {
        looked_ = Clock::now();
        if (store_.files_replaced()) throw MapReplaced{};
    }
    // The same once a second has passed since the last look: for a loop that may turn many
    // times a second (the messages of a refresh).
    void look_every_second() {
        if (Clock::now() - looked_ >= std::chrono::seconds(1)) look();
    }

private:
    const MapStore& store_;
    Clock::time_point looked_{};
};

// Sleeps `seconds`, waking early when `stop` is set; looks at the map's files once a second
// (throws MapReplaced).
void pause(const std::atomic<bool>& stop, FilesWatch& files, unsigned seconds) {
    for (unsigned i = 0; i < seconds * 10 && !stop; ++i) {
        if (i % 10 == 0) files.look();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

// One decoded message of a sync search.
struct SyncMessage {
    enum class Kind { entry, info, done, reference, other } kind = Kind::other;
    int msgid = 0;
    std::optional<SyncState> state;  // entry
    Entry entry;                     // entry (dn only for a delete)
    std::optional<SyncInfo> info;    // info
    int result = LDAP_SUCCESS;       // done
    std::string diagnostic;          // done
    std::vector<std::string> references;  // reference: a continuation reference's URLs
};

SyncMessage decode(LDAP* ld, LDAPMessage* m) {
    SyncMessage out;
    out.msgid = ldap_msgid(m);
    switch (ldap_msgtype(m)) {
        case LDAP_RES_SEARCH_REFERENCE:
            out.kind = SyncMessage::Kind::reference;
            out.references = reference_urls(ld, m);
            break;
        case LDAP_RES_SEARCH_ENTRY: {
            out.kind = SyncMessage::Kind::entry;
            LDAPControl** raw = nullptr;
            if (ldap_get_entry_controls(ld, m, &raw) != LDAP_SUCCESS)
                throw DirectoryError("unreadable controls on a sync entry", true);
            Controls controls(raw);
            for (LDAPControl** c = raw; c && *c; ++c)
                if (std::string_view((*c)->ldctl_oid) == kSyncStateOid)
                    out.state = decode_sync_state(std::string_view((*c)->ldctl_value.bv_val, (*c)->ldctl_value.bv_len));
            if (!out.state) throw DirectoryError("a sync entry without a valid Sync State control (RFC 4533 2.3)", true);
            out.entry = entry_from_message(ld, m);
            break;
        }
        case LDAP_RES_INTERMEDIATE: {
            out.kind = SyncMessage::Kind::info;
            char* oid = nullptr;
            berval* value = nullptr;
            if (ldap_parse_intermediate(ld, m, &oid, &value, nullptr, 0) != LDAP_SUCCESS)
                throw DirectoryError("unreadable intermediate response", true);
            const bool is_sync = oid && std::string_view(oid) == kSyncInfoOid;
            if (is_sync && value) out.info = decode_sync_info(std::string_view(value->bv_val, value->bv_len));
            ldap_memfree(oid);
            ber_bvfree(value);
            if (is_sync && !out.info) throw DirectoryError("an unreadable Sync Info message (RFC 4533 2.5)", true);
            if (!is_sync) out.kind = SyncMessage::Kind::other;
            break;
        }
        case LDAP_RES_SEARCH_RESULT: {
            out.kind = SyncMessage::Kind::done;
            char* diagnostic = nullptr;
            const int rc = ldap_parse_result(ld, m, &out.result, nullptr, &diagnostic, nullptr, nullptr, 0);
            if (diagnostic) out.diagnostic = diagnostic;
            ldap_memfree(diagnostic);
            if (rc != LDAP_SUCCESS) out.result = rc;
            break;
        }
        default:
            break;
    }
    return out;
}

// One connection's RFC 4533 session: the group searches and the people search, their refresh
// written as one full sync, then each change as it comes.
class SyncSession {
    // A people entry and its entryCSN, as the cookie's witness (read_witnesses()).
    struct CookieWitness {
        std::string uuid, csn;
    };
    // What read_witnesses() found before a resume.
    struct WitnessReading {
        std::optional<std::string> restored;            // why, when certain
        std::map<std::string, std::string> gone, back;  // entryUUID -> what to say of it
    };

public:
    SyncSession(const Config& config, MapStore& store, LdapSession& ldap, const std::atomic<bool>& stop,
                FilesWatch& files)
        : config_(config), d_(config.directory), store_(store), ldap_(ldap), stop_(stop), files_(files) {}

    // Returns when stop is set; throws DirectoryError when the connection or a search ends.
    void run(const FollowHooks& hooks) {
        hooks_ = &hooks;
        warn_of_references();
        // Groups first, so every person of the refresh is classified with the membership.
        if (!d_.migrated_group.empty())
            migrated_id_ = start(d_.migrated_group, LDAP_SCOPE_BASE, "(objectClass=*)", followed_group_attributes());
        if (!d_.dual_group.empty())
            dual_id_ = start(d_.dual_group, LDAP_SCOPE_BASE, "(objectClass=*)", followed_group_attributes());
        int groups_pending = (migrated_id_ ? 1 : 0) + (dual_id_ ? 1 : 0);
        bool migrated_seen = !migrated_id_, dual_seen = !dual_id_;
        while (groups_pending > 0) {
            SyncMessage m = next_within_timeout("reading the groups");
            if (m.kind == SyncMessage::Kind::entry) {
                if (m.msgid == migrated_id_) {
                    newer_group(Membership::Group::migrated, m.entry);
                    raw_migrated_ = group_member_values(m.entry);
                    membership_.assign(Membership::Group::migrated, raw_migrated_);
                    migrated_seen = true;
                }
                if (m.msgid == dual_id_) {
                    newer_group(Membership::Group::dual, m.entry);
                    raw_dual_ = group_member_values(m.entry);
                    membership_.assign(Membership::Group::dual, raw_dual_);
                    dual_seen = true;
                }
            } else if (m.kind == SyncMessage::Kind::info && m.info && m.info->kind != SyncInfo::Kind::new_cookie &&
                       m.info->refresh_done) {
                --groups_pending;
            } else if (m.kind == SyncMessage::Kind::done) {
                ended(m);
            }
        }
        // A configured group that is not there would move every member back to the source.
        if (!migrated_seen) throw DirectoryError(fmt::format("migrated_group {} is not readable", d_.migrated_group), false);
        if (!dual_seen) throw DirectoryError(fmt::format("dual_group {} is not readable", d_.dual_group), false);

        groups_fingerprint_ = fingerprint_groups();
        std::optional<std::string> resume_cookie = resumable();
        WitnessReading witnesses;
        if (resume_cookie) {
            witnesses = read_witnesses();
            if (witnesses.restored) {
                forget_cookie(*witnesses.restored);
                forget_index();
                resume_cookie.reset();
            }
        }
        people_id_ = start(d_.base, LDAP_SCOPE_SUBTREE, d_.filter, followed_person_attributes(), resume_cookie);
        if (resume_cookie) {
            try {
                resume_people(witnesses);
            } catch (const CannotResume& e) {
                // The resume's transaction is aborted: the index it changed is thrown away
                // with it, and the people are read again from the start, without a cookie.
                forget_cookie(e.why);
                forget_index();
                resume_cookie.reset();
                people_id_ = start(d_.base, LDAP_SCOPE_SUBTREE, d_.filter, followed_person_attributes());
                refresh_people();
            }
        } else {
            refresh_people();
        }
        users_at_refresh_ = claims_.size();
        log_info("sync: following {} (RFC 4533 refreshAndPersist{}): {} users", ldap_.uri(),
                 resume_cookie ? ", resumed from the stored cookie" : "", claims_.size());
        if (hooks.ready) hooks.ready();
        if (hooks.status) hooks.status(fmt::format("following {}: {} users", ldap_.uri(), claims_.size()));
        persist();
    }

private:
    int start(const std::string& base, int scope, const std::string& filter, std::vector<std::string> attributes,
              const std::optional<std::string>& cookie = std::nullopt) {
        const std::string value = encode_sync_request(SyncMode::refresh_and_persist, cookie, false);
        LDAPControl control{};
        control.ldctl_oid = const_cast<char*>(kSyncRequestOid);
        control.ldctl_value.bv_val = const_cast<char*>(value.data());
        control.ldctl_value.bv_len = value.size();
        control.ldctl_iscritical = 1;
        LDAPControl* controls[] = {&control, nullptr};
        std::vector<char*> attrs;
        for (auto& a : attributes) attrs.push_back(a.data());
        attrs.push_back(nullptr);
        int msgid = 0;
        const int rc = ldap_search_ext(ldap_.handle(), base.c_str(), scope, filter.c_str(), attrs.data(), 0, controls,
                                       nullptr, nullptr, 0, &msgid);
        if (rc != LDAP_SUCCESS)
            throw DirectoryError(fmt::format("{}: sync search of {}: {}", ldap_.uri(), base, ldap_error_text(rc)),
                                 is_transient(rc));
        return msgid;
    }

    // The next message of any of our searches; with `block` false, nullopt-like kind other
    // when none is waiting. Wakes every second to look at `stop` and at the map's files (throws
    // MapReplaced), and looks at those once a second while messages come too.
    SyncMessage next(bool block, std::chrono::seconds idle_after = std::chrono::hours(24 * 365)) {
        const auto started = Clock::now();
        for (;;) {
            if (stop_) throw Stopped{};
            if (block && Clock::now() - started >= idle_after) return SyncMessage{};
            timeval tv{block ? 1 : 0, 0};
            LDAPMessage* raw = nullptr;
            const int rc = ldap_result(ldap_.handle(), LDAP_RES_ANY, LDAP_MSG_ONE, &tv, &raw);
            Message m(raw);
            if (rc < 0) {
                if (stop_) throw Stopped{};  // SIGTERM interrupted the wait: not a directory error
                int err = LDAP_SERVER_DOWN;
                ldap_get_option(ldap_.handle(), LDAP_OPT_RESULT_CODE, &err);
                throw DirectoryError(fmt::format("{}: {}", ldap_.uri(), ldap_error_text(err)), true);
            }
            if (rc == 0) {
                if (!block) return SyncMessage{};
                files_.look();  // a second without a message: the persist stage's idle wait
                continue;
            }
            files_.look_every_second();
            SyncMessage decoded = decode(ldap_.handle(), m.get());
            if (decoded.kind != SyncMessage::Kind::reference) return decoded;
            // Its users are on another server: not followed, said once a session each.
            for (const auto& url : decoded.references)
                if (said_references_.size() < LdapSession::kMaxSkippedReferences && said_references_.insert(url).second)
                    log_warning("sync: {}", skipped_reference_warning(d_, url));
        }
    }

    // The next message of a refresh, which runs inside the map's write transaction: while it
    // is open every other writer of the map (`coexist-map set`, `import`) waits. A server that
    // sends nothing for [directory] timeout (stopped, overloaded, a dead link that TCP has not
    // noticed yet) ends the session: the transaction is aborted, the map keeps its last state,
    // and follow() reconnects with its backoff. The whole refresh may take longer; no single
    // wait may.
    SyncMessage next_within_timeout(std::string_view stage) {
        const std::chrono::seconds timeout(d_.timeout_seconds);
        SyncMessage m = next(true, timeout);
        if (m.kind == SyncMessage::Kind::other && m.msgid == 0)
            throw DirectoryError(fmt::format("{}: no answer for {} s (timeout) while {}; the refresh is given up, "
                                             "the map unchanged", ldap_.uri(), timeout.count(), stage),
                                 true);
        return m;
    }

    [[noreturn]] void ended(const SyncMessage& m) {
        throw DirectoryError(fmt::format("{}: the sync search ended: {}", ldap_.uri(), ldap_error_text(m.result, m.diagnostic)),
                             m.result == LDAP_SUCCESS || is_transient(m.result));
    }

    // What a stored cookie is valid for: the server, and everything that decides which entries
    // are users and how they are read (a changed filter or domain needs a full refresh); and
    // what the map records of them, which a resumed session is rebuilt from: a cookie stored by
    // a follower that did not record hidden aliases (MapTxn::hidden_aliases_of) is not resumed
    // from, so the first start after the upgrade reads in full and records them.
    static constexpr std::string_view kRecorded = "hidden_aliases";
    std::string view_fingerprint() const {
        std::string v = fmt::format("{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}", ldap_.uri(), d_.base, d_.filter,
                                    d_.address_attribute, fmt::join(d_.alias_attributes, " "), d_.state_attribute,
                                    d_.target_attribute, d_.batch_attribute, d_.migrated_group, d_.dual_group,
                                    kRecorded);
        for (const auto& dom : config_.domains) v += fmt::format("\n{} {}", dom.name, fmt::join(dom.aliases, " "));
        return fmt::format("{:016x}", fnv1a64(v));
    }
    // The group members as read now: a resume needs them unchanged since the cookie (the
    // people search's cookie says nothing about the groups).
    std::string fingerprint_groups() const {
        return fmt::format("{:016x}", membership_.fingerprint());
    }

    // The stored cookie, when it still describes this view and the map knows every directory
    // user's entryUUID; the in-memory index is then loaded from the map. nullopt: full refresh.
    std::optional<std::string> resumable() {
        std::optional<std::string> cookie;
        store_.read([&](MapTxn& txn) {
            const auto stored = txn.meta(meta::kDirectoryCookie);
            if (!stored || stored->empty()) return;
            // Said, as the server's refusals of a cookie are: a full read of a large directory
            // is not something to leave unexplained in the log.
            if (txn.meta(meta::kDirectoryCookieView) != view_fingerprint()) {
                log_info("sync: the server, base, filter, attributes, groups or managed domains changed since the "
                         "stored cookie: reading the directory in full");
                return;
            }
            if (txn.meta(meta::kDirectoryCookieGroups) != groups_fingerprint_) {
                log_info("sync: the groups' members changed since the stored cookie (which covers the people "
                         "only): reading the directory in full");
                return;
            }
            bool complete = true;
            txn.for_each_user([&](std::string_view key, const UserRecord& r) {
                if (r.owner != Owner::directory) return true;
                if (r.entry_uuid.empty()) {
                    complete = false;
                    return false;
                }
                DirectoryUser u;
                u.key = std::string(key);
                u.dn = r.dn;
                u.entry_uuid = r.entry_uuid;
                u.state = r.state;
                if (!d_.target_attribute.empty()) u.target = r.target;
                if (!d_.batch_attribute.empty()) u.batch = r.batch;
                // What the user lists: the aliases it holds, and those another user's address
                // hides, which the map records too. Known here, an alias it lists keeps its
                // place in this session's view, and a group change that writes the user again
                // does not take away one the admin's removal of that address gave it meanwhile.
                u.aliases = txn.aliases_of(key);
                for (auto& hidden : txn.hidden_aliases_of(key)) u.aliases.push_back(std::move(hidden));
                std::sort(u.aliases.begin(), u.aliases.end());
                claim_aliases(u, true);
                add_entry(std::move(u));
                return true;
            });
            if (!complete) return;
            cookie = *stored;
            // Maps from before the witness was stored have none: resumed as before.
            if (const auto w = txn.meta(meta::kDirectoryCookieWitness))
                newest_ = parse_witnesses(*w);
            if (const auto gone = txn.meta(meta::kDirectoryCookieDeleted))
                for (std::string_view rest = *gone; !rest.empty();) {
                    const auto end = std::min(rest.find(' '), rest.size());
                    if (end > 0) recently_left_.emplace_back(rest.substr(0, end));
                    rest.remove_prefix(std::min(end + 1, rest.size()));
                }
        });
        if (!cookie) forget_index();
        return cookie;
    }

    // Back to knowing no user, for a refresh without a cookie.
    void forget_index() {
        people_.clear();
        by_dn_.clear();
        claims_.clear();
        contested_keys_ = 0;
        alias_claims_.clear();
        contested_aliases_ = 0;
        removals_.clear();
        departures_ = 0;
        held_ = 0;
        held_written_ = 0;
        held_entries_ = {};
        cookie_.reset();
        newest_.clear();
        recently_left_.clear();
    }

    // The refresh stage of a search resumed from a cookie (RFC 4533 3.3.1): only what changed
    // since comes as "add"; deletions as "delete" entries or a syncIdSet, or, in the present
    // phase, every unchanged entry is named present and the rest are gone. Written in one
    // transaction, removals within max_removals. Whether the cookie may be resumed from at all
    // was asked before (read_witnesses()), and what it doubted must be answered here.
    void resume_people(const WitnessReading& witnesses) {
        write_refresh([&](MapTxn& txn, std::int64_t refresh_time) {
            SyncCounts counts;
            ViewWriter writer(txn, counts, log_change);
            follow_incrementally(writer);
            std::unordered_set<std::string> present;
            std::unordered_set<std::string> changed;  // sent as added or changed (present too)
            bool present_phase = false;
            // Entries named deleted are removed once the refresh has been read: an entry re-created
            // under a new entryUUID, or a directory rebuilt, gives its address to the new entry
            // whichever order the server sends them in, so the address never counts as removed.
            std::vector<std::string> deleted;
            for (;;) {
                SyncMessage m = next_within_timeout("resuming from the stored cookie");
                if (m.kind == SyncMessage::Kind::done) {
                    if (cannot_resume(m)) throw CannotResume{ldap_error_text(m.result, m.diagnostic)};
                    ended(m);
                }
                if (m.kind == SyncMessage::Kind::info && m.info) {
                    if (m.msgid != people_id_) continue;
                    if (m.info->cookie) cookie_ = m.info->cookie;
                    if (m.info->kind == SyncInfo::Kind::sync_id_set) {
                        for (const auto& raw : m.info->uuids) {
                            if (m.info->refresh_deletes) deleted.push_back(format_uuid(raw));
                            else present.insert(format_uuid(raw));
                        }
                        present_phase = present_phase || !m.info->refresh_deletes;
                        continue;
                    }
                    if (m.info->kind == SyncInfo::Kind::refresh_present) present_phase = true;
                    if (m.info->kind != SyncInfo::Kind::new_cookie && m.info->refresh_done) break;
                    continue;
                }
                if (m.kind != SyncMessage::Kind::entry) continue;
                if (m.msgid != people_id_) {
                    apply_group(writer, m);
                    continue;
                }
                if (m.state->cookie) cookie_ = m.state->cookie;
                const std::string uuid = format_uuid(m.state->entry_uuid);
                switch (m.state->state) {
                    case SyncStateKind::present:
                        present.insert(uuid);
                        present_phase = true;
                        break;
                    case SyncStateKind::add:
                    case SyncStateKind::modify:
                        present.insert(uuid);
                        changed.insert(uuid);
                        apply_person(writer, m);
                        break;
                    case SyncStateKind::remove:
                        deleted.push_back(uuid);
                        break;
                }
            }
            // The witnesses' doubts, each answered by this refresh or the restore is certain.
            for (const auto& [uuid, why] : witnesses.gone) {
                const bool said_deleted = std::find(deleted.begin(), deleted.end(), uuid) != deleted.end();
                if (!said_deleted && !(present_phase && !present.count(uuid))) throw CannotResume{why};
            }
            // Named present only (a present phase) is no answer: the restored entry is "unchanged".
            for (const auto& [uuid, why] : witnesses.back)
                if (!changed.count(uuid)) throw CannotResume{why};
            if (present_phase)
                for (const auto& [uuid, person] : people_)
                    if (!present.count(uuid)) deleted.push_back(uuid);
            for (const auto& uuid : deleted)
                if (!present.count(uuid)) remove_uuid(writer, uuid);  // named deleted and sent again: kept
            finish(txn, counts, refresh_time);
        });
    }

    // Runs a refresh stage in one write transaction. The messages it reads cannot be read again,
    // so if the map had to grow under it (MapStore reruns the body) the session starts over.
    void write_refresh(const std::function<void(MapTxn&, std::int64_t refresh_time)>& body) {
        const ChangeContext context = sync_context(ldap_.uri());
        bool ran = false;
        store_.write(context, [&](MapTxn& txn) {
            if (ran) throw DirectoryError("the map grew during a refresh; starting it again", true);
            ran = true;
            body(txn, context.time);
        });
        report();
    }

    // A writer applying changes one by one rather than a whole view: conflicts are decided by
    // what this session knows of the whole directory, as a full sync would decide them.
    void follow_incrementally(ViewWriter& writer) {
        decide_addresses(writer);
        writer.set_alias_owner([this](std::string_view alias) { return alias_owner(alias); });
    }
    // Which entry holds an address given twice is decided here (holder()), in the refresh too.
    void decide_addresses(ViewWriter& writer) {
        writer.set_present([this](std::string_view dn, std::string_view key) {
            const auto uuid = by_dn_.find(std::string(dn));
            return uuid != by_dn_.end() && people_.at(uuid->second).key == key;
        });
    }

    // The server's answer to a resumed search that means "not from this cookie":
    // e-syncRefreshRequired (RFC 4533 2.6), and slapd's unwillingToPerform "consumer state is
    // newer than provider!" when the directory was restored from a backup older than the
    // cookie (or another server answers the URI). Either way a full read makes the map equal to
    // the directory again; a server that refuses that too is left to the admin.
    static constexpr int kSyncRefreshRequired = 0x1000;
    static bool cannot_resume(const SyncMessage& m) {
        return m.result == kSyncRefreshRequired || m.result == LDAP_UNWILLING_TO_PERFORM;
    }
    struct CannotResume {
        std::string why;
    };

    // The people attributes the follower asks for: entryCSN too, for the cookie's witness.
    std::vector<std::string> followed_person_attributes() const {
        auto attributes = person_attributes(d_);
        attributes.emplace_back("entryCSN");
        return attributes;
    }

    // Continuation references under the base, looked for at each session's start: a resumed
    // refresh names none that did not change, and the persist stage none at all (slapd 2.5), so
    // a branch delegated to another server would go unsaid. Advisory: a failure is left to the
    // searches that follow, which meet it too.
    void warn_of_references() {
        try {
            ldap_.search_paged(d_.base, LDAP_SCOPE_SUBTREE, "(objectClass=referral)", {"1.1"}, [](Entry&&) {});
        } catch (const DirectoryError&) {
        }
        for (const auto& url : ldap_.take_skipped_references())
            if (said_references_.size() < LdapSession::kMaxSkippedReferences && said_references_.insert(url).second)
                log_warning("sync: {}", skipped_reference_warning(d_, url));
    }

    // Keeps the entry among the newest by entryCSN. CSNs ("20261207192501.123456Z#000000#000#000000")
    // order as text, the time first.
    void note_witness(const std::string& uuid, const Entry& entry) {
        const auto csn = entry.attributes.find("entrycsn");
        if (csn == entry.attributes.end() || csn->second.empty() || csn->second.front().empty()) return;
        std::erase_if(newest_, [&](const CookieWitness& w) { return w.uuid == uuid; });
        std::erase(recently_left_, uuid);  // back in the view, and seen so
        const auto at = std::find_if(newest_.begin(), newest_.end(),
                                     [&](const CookieWitness& w) { return w.csn < csn->second.front(); });
        newest_.insert(at, CookieWitness{uuid, csn->second.front()});
        if (newest_.size() > kWitnesses) newest_.pop_back();
    }
    // A deleted entry is no witness: the next newest is, so that deleting the entry last
    // changed does not make the next resume a full read (unless all kWitnesses were deleted).
    void drop_witness(const std::string& uuid) {
        std::erase_if(newest_, [&](const CookieWitness& w) { return w.uuid == uuid; });
        // Kept instead among the entries that left the view: one of them there again is a
        // restore (a delete leaves no entryCSN behind to compare).
        std::erase(recently_left_, uuid);
        recently_left_.push_back(uuid);
        if (recently_left_.size() > kLeftWitnesses) recently_left_.erase(recently_left_.begin());
    }
    // "UUID CSN UUID CSN ...", as finish() stores them; a pair cut short is left out.
    static std::vector<CookieWitness> parse_witnesses(std::string_view text) {
        std::vector<std::string> words;
        for (std::string_view rest = text; !rest.empty();) {
            const auto end = std::min(rest.find(' '), rest.size());
            if (end > 0) words.emplace_back(rest.substr(0, end));
            rest.remove_prefix(std::min(end + 1, rest.size()));
        }
        std::vector<CookieWitness> out;
        for (std::size_t i = 0; i + 1 < words.size() && out.size() < kWitnesses; i += 2)
            out.push_back(CookieWitness{words[i], words[i + 1]});
        return out;
    }

    // What the stored cookie's witnesses say before a resume. A directory restored from a
    // backup older than the cookie, and written to before the follower is back, takes the cookie
    // (the write moved its contextCSN past it) and names only what changed since by its own log:
    // entries the restore brought back or took back to an older state carry the backup's
    // entryCSNs, are "unchanged", and the map would keep their newer state for good. So the
    // cookie keeps the newest entries it covers (kWitnesses, by entryCSN) and the last entries
    // it saw leave the view (kLeftWitnesses):
    // - a witness older than the cookie saw it: restored, for certain (`restored`);
    // - a witness gone, or an entry that left there again under its entryUUID (which no new
    //   entry takes): restored, unless the resume itself says why, by naming that witness
    //   deleted (or, in a present phase, not present) or sending that entry as changed
    //   (`suspects`, checked by resume_people()).
    // A witness whose entryCSN cannot be read (ACLs) says nothing. Throws DirectoryError when a
    // search fails (the follower reconnects and tries again).
    WitnessReading read_witnesses() {
        WitnessReading r;
        if (!newest_.empty()) {
            std::string any;
            for (const auto& w : newest_) any += "(entryUUID=" + w.uuid + ")";
            std::map<std::string, std::optional<std::string>> found;  // entryUUID -> entryCSN now
            ldap_.search_paged(d_.base, LDAP_SCOPE_SUBTREE, "(|" + any + ")", {"entryUUID", "entryCSN"},
                               [&](Entry&& e) {
                                   const auto uuid = e.attributes.find("entryuuid");
                                   if (uuid == e.attributes.end() || uuid->second.empty()) return;
                                   const auto csn = e.attributes.find("entrycsn");
                                   found[lowercase_ascii(uuid->second.front())] =
                                       csn != e.attributes.end() && !csn->second.empty()
                                           ? std::optional<std::string>(csn->second.front())
                                           : std::nullopt;
                               });
            for (const auto& w : newest_) {
                const auto now = found.find(lowercase_ascii(w.uuid));
                if (now == found.end()) {
                    r.gone.emplace(lowercase_ascii(w.uuid),
                                   fmt::format("an entry the cookie covers (entryUUID {}, entryCSN {}) is gone, and "
                                               "the directory does not say it was deleted: it was restored from an "
                                               "older backup", w.uuid, w.csn));
                } else if (now->second && *now->second < w.csn && !r.restored) {
                    r.restored = fmt::format("an entry the cookie covers (entryUUID {}) is older than the cookie "
                                             "(entryCSN {}, was {}): the directory was restored from an older "
                                             "backup", w.uuid, *now->second, w.csn);
                }
            }
        }
        if (!recently_left_.empty()) {
            std::string any;
            for (const auto& uuid : recently_left_) any += "(entryUUID=" + uuid + ")";
            ldap_.search_paged(d_.base, LDAP_SCOPE_SUBTREE, "(&" + d_.filter + "(|" + any + "))", {"entryUUID"},
                               [&](Entry&& e) {
                                   const auto uuid = e.attributes.find("entryuuid");
                                   if (uuid == e.attributes.end() || uuid->second.empty()) return;
                                   r.back.emplace(lowercase_ascii(uuid->second.front()),
                                                  fmt::format("{} left the directory's view before the cookie and is "
                                                              "there again under the same entryUUID, unchanged since: "
                                                              "the directory was restored from an older backup", e.dn));
                               });
        }
        return r;
    }
    void forget_cookie(const std::string& why) {
        store_.write(sync_context(ldap_.uri()), [](MapTxn& txn) { txn.put_meta(meta::kDirectoryCookie, ""); });
        log_info("sync: {} cannot resume from the stored cookie ({}); cookie dropped, reading the directory in full",
                 ldap_.uri(), why);
    }

    // The refresh stage of the people search (no cookie: every entry as "add"), written in one
    // transaction like `coexist-map sync`, with its safety limit: removals beyond it are held.
    void refresh_people() {
        write_refresh([&](MapTxn& txn, std::int64_t refresh_time) {
            SyncCounts counts;
            ViewWriter writer(txn, counts);
            decide_addresses(writer);
            for (;;) {
                SyncMessage m = next_within_timeout("reading the people");
                if (m.kind == SyncMessage::Kind::done) ended(m);
                if (m.kind == SyncMessage::Kind::info && m.info) {
                    if (m.info->cookie) cookie_ = m.info->cookie;
                    if (m.msgid == people_id_ && m.info->kind != SyncInfo::Kind::new_cookie && m.info->refresh_done) break;
                    continue;
                }
                if (m.kind != SyncMessage::Kind::entry) continue;
                if (m.msgid != people_id_) {  // a group changed while the people were read
                    apply_group(writer, m);
                    continue;
                }
                if (m.state->cookie) cookie_ = m.state->cookie;
                if (m.state->state == SyncStateKind::add || m.state->state == SyncStateKind::modify) apply_person(writer, m);
            }
            // Beyond max_removals the whole refresh is thrown away (the map keeps its last state,
            // never half of a mass mistake); follow() says so and retries until the directory is
            // fixed or an admin runs `sync --force`.
            writer.remove_unseen(d_, false);
            txn.put_meta(meta::kDirectoryHeldRemovals, "0");
            finish(txn, counts, refresh_time);
        });
    }

    // The persist stage: each change applied as it arrives; what arrives together (a group of
    // 10,000 members changed at once) goes into one transaction.
    void persist() {
        persisting_ = true;
        for (;;) {
            std::vector<SyncMessage> batch;
            SyncMessage first = next(true, idle_wait());
            const bool idle = first.kind == SyncMessage::Kind::other && first.msgid == 0;
            std::optional<GroupsNow> groups_now = due_group_reading();
            if (idle && !groups_now) {
                if (idle_wait() == kHeartbeat) heartbeat();
                continue;
            }
            if (!idle) batch.push_back(std::move(first));
            while (!idle && batch.size() < 1000) {
                SyncMessage m = next(false);
                if (m.kind == SyncMessage::Kind::other && m.msgid == 0) break;
                batch.push_back(std::move(m));
            }
            for (const auto& m : batch)
                if (m.kind == SyncMessage::Kind::done) ended(m);
            store_.write(sync_context(ldap_.uri()), [&](MapTxn& txn) {
                SyncCounts counts;
                ViewWriter writer(txn, counts, log_change);
                follow_incrementally(writer);
                for (const auto& m : batch) {
                    if (m.kind == SyncMessage::Kind::info && m.info) {
                        if (m.info->cookie && m.msgid == people_id_) cookie_ = m.info->cookie;
                        if (m.info->kind == SyncInfo::Kind::sync_id_set && m.info->refresh_deletes)
                            for (const auto& uuid : m.info->uuids) remove_uuid(writer, format_uuid(uuid));
                        continue;
                    }
                    if (m.kind != SyncMessage::Kind::entry) continue;
                    if (m.state->cookie && m.msgid == people_id_) cookie_ = m.state->cookie;
                    if (m.msgid != people_id_) {
                        apply_group(writer, m);
                    } else if (m.state->state == SyncStateKind::remove) {
                        remove_uuid(writer, format_uuid(m.state->entry_uuid));
                    } else if (m.state->state != SyncStateKind::present) {
                        apply_person(writer, m);
                    }
                }
                if (groups_now) apply_group_reading(writer, *groups_now);
                finish(txn, counts, 0);
            });
            report();
        }
    }

    // One mail-log line per change the follower makes (a full refresh logs its summary only).
    static void log_change(const std::string& line) { log_info("sync: {}", line); }

    // A quiet directory is not a stale map: after kHeartbeat without a change, the server is
    // asked for its root DSE (a dead connection fails here and reconnects) and the map records
    // that it still equals the directory, so a reject domain's max_age (design 13.6) measures
    // how long the follower has been cut off, not how long nobody changed anything.
    static constexpr std::chrono::seconds kHeartbeat{30};
    void heartbeat() {
        ldap_.supports_control(kSyncRequestOid);
        store_.write(sync_context(ldap_.uri()), [&](MapTxn& txn) {
            const auto now = static_cast<std::int64_t>(::time(nullptr));
            txn.put_meta(meta::kDirectorySyncedAt, std::to_string(now));
            txn.put_meta(meta::kDirectoryFollowing, following_text());
        });
    }

    std::string following_text() const {
        return fmt::format("RFC 4533 refreshAndPersist from {} since {} (pid {})", ldap_.uri(), since_, ::getpid());
    }

    // Which user should hold `alias` in the directory's whole view: the smallest key among the
    // users that list it, as a full sync decides; nullopt when nobody does.
    std::optional<std::string> alias_owner(std::string_view alias) const {
        const auto it = alias_claims_.find(std::string(alias));
        if (it == alias_claims_.end() || it->second.empty()) return std::nullopt;
        return *it->second.begin();
    }
    void claim_aliases(const DirectoryUser& u, bool add) {
        for (const auto& a : u.aliases) {
            reclaiming(a, [&] {
                auto& claimants = alias_claims_[a];
                if (add) {
                    claimants.insert(u.key);
                } else {
                    claimants.erase(u.key);
                    if (claimants.empty()) alias_claims_.erase(a);
                }
            });
        }
    }
    // An alias listed by several users, or by a user while it is an entry's address: the map
    // holds one claimant (or none, the address being the entry's), so the others are known to
    // this session only, as for an address several entries give (see finish()).
    bool alias_contested(const std::string& alias) const {
        const auto it = alias_claims_.find(alias);
        const std::size_t listing = it == alias_claims_.end() ? 0 : it->second.size();
        return listing + (claims_.count(alias) ? 1 : 0) > 1;
    }
    // Runs `change` on the claims of `address` (as an alias, or as an entry's address) and keeps
    // contested_aliases_ in step with it.
    template <typename Change>
    void reclaiming(const std::string& address, Change&& change) {
        const bool was = alias_contested(address);
        change();
        const bool is = alias_contested(address);
        if (is && !was) ++contested_aliases_;
        if (was && !is) --contested_aliases_;
    }

    // Who holds an address. Two entries may give the same one: an address passing from one
    // entry to another, an entry deleted and re-created under a new entryUUID, a directory
    // rebuilt. The map has one record a key, the view of the entry with the smallest DN, as a
    // full sync decides (ViewWriter::upsert); every entry that gives a key is kept here, so that
    // when the holder lets go of it the next one's view is written instead of the key removed.
    // Only the holder's aliases are claimed, as only its aliases are in the map.
    const DirectoryUser* holder(const std::string& key) const {
        const auto it = claims_.find(key);
        if (it == claims_.end() || it->second.empty()) return nullptr;
        return &people_.at(it->second.begin()->second);
    }
    bool holds(const std::string& uuid) const {
        const auto it = people_.find(uuid);
        if (it == people_.end()) return false;
        const DirectoryUser* h = holder(it->second.key);
        return h && h->entry_uuid == uuid;
    }
    std::optional<DirectoryUser> held(const std::string& key) const {
        if (const DirectoryUser* h = holder(key)) return *h;
        return std::nullopt;
    }
    void add_entry(DirectoryUser u) {
        reclaiming(u.key, [&] {
            auto& claimants = claims_[u.key];
            claimants.emplace(u.dn, u.entry_uuid);
            if (claimants.size() == 2) ++contested_keys_;
        });
        by_dn_[u.dn] = u.entry_uuid;
        const std::string uuid = u.entry_uuid;
        people_[uuid] = std::move(u);
    }
    void drop_entry(const std::string& uuid) {
        const auto it = people_.find(uuid);
        if (it == people_.end()) return;
        const DirectoryUser& u = it->second;
        reclaiming(u.key, [&] {
            if (auto c = claims_.find(u.key); c != claims_.end()) {
                c->second.erase(Claim{u.dn, uuid});
                if (c->second.size() == 1) --contested_keys_;
                if (c->second.empty()) claims_.erase(c);
            }
        });
        if (auto d = by_dn_.find(u.dn); d != by_dn_.end() && d->second == uuid) {
            by_dn_.erase(d);
            // The entry re-created at the same DN under another entryUUID, still here, is the
            // one a group member of that DN means.
            if (auto c = claims_.find(u.key); c != claims_.end())
                if (auto same = c->second.lower_bound(Claim{u.dn, ""}); same != c->second.end() && same->first == u.dn)
                    by_dn_[u.dn] = same->second;
        }
        people_.erase(it);
    }

    // After the entries giving `key` changed: the alias claims follow the holder, and the map
    // gets the holder's view, or loses the key when no entry gives it any more (within
    // max_removals). `was`: the holder before the change, as it was; `changed`: the entryUUID
    // of the entry that changed (its view is written when it holds the key).
    // `renamed`: the entry that changed is still a user, under another address; a key it leaves
    // with nobody is removed without counting against max_removals (no user left).
    void settle(ViewWriter& writer, const std::string& key, const std::optional<DirectoryUser>& was,
                const std::string& changed, bool renamed = false) {
        const DirectoryUser* now = holder(key);
        if (was) claim_aliases(*was, false);
        if (now) claim_aliases(*now, true);
        if (!now) {
            if (!was) return;
            if (renamed) writer.remove(key, true);
            else remove_key(writer, key, was->entry_uuid);
            return;
        }
        if (!was || was->entry_uuid != now->entry_uuid || now->entry_uuid == changed) {
            writer.upsert(*now);  // warns itself when it takes the key from another entry still here
        } else if (const auto other = people_.find(changed); other != people_.end() && other->second.key == key &&
                                                              other->second.dn != now->dn) {
            // The same DN twice is one entry re-created, the old entryUUID about to be reported gone.
            writer.address_conflict(key, now->dn, other->second.dn);
        }
    }

    void apply_person(ViewWriter& writer, const SyncMessage& m) {
        const std::string uuid = format_uuid(m.state->entry_uuid);
        note_witness(uuid, m.entry);
        Classified c = classify(config_, m.entry, membership_);
        for (const auto& w : c.warnings) log_warning("sync: {}", w);
        std::optional<DirectoryUser> before;
        if (auto old = people_.find(uuid); old != people_.end()) before = old->second;
        if (c.user && before && moved_by_stale_groups(*before, *c.user)) {
            // Kept as it was until the groups are read again (apply_group_reading); an entry
            // renamed twice keeps the DN it had before the first rename.
            c.user->state = before->state;
            held_renames_.try_emplace(uuid, before->dn);
            schedule_group_readings();
        } else if (c.user && !before && persisting_ && groups_decide()) {
            // A new entry may be one moved into the base (modrdn with newSuperior), whose group
            // refint rewrote as unseen as for a rename: read from the groups at the readings.
            schedule_group_readings();
        }
        if (c.user) {
            c.user->entry_uuid = uuid;
            // A user whose own entry moves them back to the source (state_attribute, memberOf, a
            // rename out of a group) counts against the same window as a group emptied, whether
            // or not its address changed with it (a rename alone is not counted: settle()).
            if (before && holds(uuid) && before->state != State::source &&
                c.user->state == State::source &&
                !within_removal_window(c.user->key, "went back to the source", false, uuid))
                c.user->state = before->state;
        }
        const bool same_key = before && c.user && before->key == c.user->key;
        const std::optional<DirectoryUser> was_old = before ? held(before->key) : std::nullopt;
        const std::optional<DirectoryUser> was_new = c.user && !same_key ? held(c.user->key) : std::nullopt;
        drop_entry(uuid);
        if (c.user) add_entry(*c.user);
        // Renamed to another address, or no longer a user of a managed domain: the old key goes
        // to the next entry giving it, or out of the map.
        if (before && !same_key) settle(writer, before->key, was_old, uuid, c.user.has_value());
        if (c.user) settle(writer, c.user->key, same_key ? was_old : was_new, uuid);
    }

    void remove_uuid(ViewWriter& writer, const std::string& uuid) {
        drop_witness(uuid);
        const auto known = people_.find(uuid);
        if (known == people_.end()) return;  // not a user of ours (a group, or out of the filter)
        const std::string key = known->second.key;
        // refint takes a deleted member out of its groups unseen: an entry made again at the
        // same DN would otherwise be read with the old membership.
        if (persisting_ && groups_decide() && listed(known->second.dn)) schedule_group_readings();
        const std::optional<DirectoryUser> was = held(key);
        drop_entry(uuid);
        settle(writer, key, was, uuid);
    }

    // Whether one more removal or demotion fits in max_removals per 60 s (design 13.5): counted
    // when it does; beyond, the change is held until `coexist-map sync --force`. The limit is a
    // share of the users before the removals of the window, so it does not shrink while a mass
    // removal is under way: the users the directory owns now, plus those that left it in the
    // window. A user moved back to the source is still one of claims_, and counted once: counted
    // again, each demotion raised the limit, and an emptied group of 20 at 50% sent 19 back.
    // `entry`: the entryUUID of the user's entry, which held_ counts once however many of its
    // changes are held (a demotion, then a rename of the same user).
    bool within_removal_window(const std::string& key, std::string_view what, bool leaves_directory,
                               const std::string& entry) {
        const auto now = Clock::now();
        while (!removals_.empty() && now - removals_.front().when > std::chrono::seconds(60)) {
            departures_ -= removals_.front().left_directory ? 1 : 0;
            removals_.pop_front();
        }
        const std::size_t limit = d_.removal_limit(std::max(claims_.size() + departures_, users_at_refresh_));
        if (removals_.size() >= limit) {
            // Counted once a user: a user held for leaving its group, then again for a rename, is
            // one removal held back, as stats says it.
            if (held_entries_.insert(hash128(entry.empty() ? key : entry))) ++held_;
            log_warning("sync: {} {}, but more than max_removals ({}) users left or went back to the source in the "
                        "last 60 s: kept in the map as it was until 'coexist-map sync --force'", key, what, limit);
            return false;
        }
        removals_.push_back({now, leaves_directory});
        departures_ += leaves_directory ? 1 : 0;
        return true;
    }

    void remove_key(ViewWriter& writer, const std::string& key, const std::string& entry) {
        if (!within_removal_window(key, "left the directory", true, entry)) return;
        writer.remove(key);
    }

    // A group entry changed: the users whose membership flipped get their new state. The server
    // sends the whole member list each time (30,000 members for one added); only the values that
    // differ from the last list, compared as sent, are normalized and looked at.
    void apply_group(ViewWriter& writer, const SyncMessage& m) {
        // The group entry itself deleted or renamed away: not an emptied group. As at start-up
        // and in a one-shot sync, a configured group that is not there moves nobody; the
        // transaction is aborted and the map keeps its state until the admin puts it back.
        if (m.state->state == SyncStateKind::remove)
            throw DirectoryError(fmt::format("{} {} is gone (deleted or renamed): its members keep their state "
                                             "until it is back",
                                             m.msgid == migrated_id_ ? "migrated_group" : "dual_group",
                                             m.msgid == migrated_id_ ? d_.migrated_group : d_.dual_group),
                                 false);
        const auto group = m.msgid == migrated_id_ ? Membership::Group::migrated : Membership::Group::dual;
        if (!newer_group(group, m.entry)) return;
        apply_group_members(writer, group, group_member_values(m.entry));
    }

    // The group attributes the follower asks for: entryCSN too, to order what the persist
    // stage sends against what a reading of the groups found (apply_group_reading).
    static std::vector<std::string> followed_group_attributes() {
        auto attributes = group_attributes();
        attributes.emplace_back("entryCSN");
        return attributes;
    }

    // Whether `group` as in `entry` is not older than the one last applied (by entryCSN, whose
    // string form orders as its time does, RFC 4533's CSN as OpenLDAP writes it), and records
    // it so. A reading of the groups runs beside the persist stage: a change the server sends
    // while the reading is under way may be newer than what the reading found, or older, and
    // the older must not undo the newer. Without entryCSN (not OpenLDAP) everything is newer.
    bool newer_group(Membership::Group group, const Entry& entry) {
        const auto* values = entry.values("entrycsn");
        if (!values || values->empty()) return true;
        std::string& last = group == Membership::Group::migrated ? migrated_csn_ : dual_csn_;
        if (values->front() < last) return false;
        last = values->front();
        return true;
    }

    // A group's member values as the server sent them now (sorted, group_member_values()).
    void apply_group_members(ViewWriter& writer, Membership::Group group, std::vector<std::string> members) {
        std::vector<std::string>& old = group == Membership::Group::migrated ? raw_migrated_ : raw_dual_;
        std::vector<std::string> added, removed;
        std::set_difference(members.begin(), members.end(), old.begin(), old.end(), std::back_inserter(added));
        std::set_difference(old.begin(), old.end(), members.begin(), members.end(), std::back_inserter(removed));
        for (const auto& dn : added) membership_.add(group, dn);
        for (const auto& dn : removed) membership_.remove(group, dn);
        old = std::move(members);
        std::vector<std::string> flipped;
        for (const auto* list : {&added, &removed})
            for (const auto& raw : *list) flipped.push_back(normalize_dn(raw));
        for (const auto& dn : flipped) {
            const auto uuid = by_dn_.find(dn);
            if (uuid == by_dn_.end()) continue;
            auto person = people_.find(uuid->second);
            if (person == people_.end()) continue;
            apply_membership(writer, uuid->second, person->second);
        }
    }

    // `u` (entry `uuid`) gets the state the groups give its DN now.
    void apply_membership(ViewWriter& writer, const std::string& uuid, DirectoryUser& u) {
        // An entry whose address another entry holds is not in the map: only remembered.
        const bool in_map = holds(uuid);
        if (d_.state_attribute.empty()) {
            const bool dual = membership_.contains(Membership::Group::dual, u.dn);
            const bool migrated = membership_.contains(Membership::Group::migrated, u.dn);
            const State state = dual ? State::dual : migrated ? State::migrated : State::source;
            // An emptied group un-migrates its members: a mass mistake like a mass removal.
            if (in_map && state == State::source && u.state != State::source &&
                !within_removal_window(u.key, "went back to the source", false, u.entry_uuid))
                return;
            u.state = state;
        }
        if (in_map) writer.upsert(u);
    }

    // The groups decide users' states (no state_attribute), and the session follows them.
    bool groups_decide() const { return d_.state_attribute.empty() && (migrated_id_ || dual_id_); }

    // Whether a DN (normalized) is a member of either group, as this session knows them.
    bool listed(const std::string& dn) const {
        return membership_.contains(Membership::Group::migrated, dn) ||
               membership_.contains(Membership::Group::dual, dn);
    }

    // A DN change (modrdn) that changes the entry's state by this session's copy of the groups
    // alone. With OpenLDAP's refint overlay the groups name the new DN a moment later, but slapd
    // 2.5 sends refint's rewrite of a group to no syncrepl search (nor to a replica): the
    // follower would never hear it, and would send a migrated user's mail back to the old
    // system until the next full read, or make a source user renamed onto a member's old DN
    // migrated. A memberOf in the entry, as AD keeps it, moves with the entry: no change then.
    bool moved_by_stale_groups(const DirectoryUser& before, const DirectoryUser& now) const {
        return groups_decide() && before.dn != now.dn && before.state != now.state;
    }

    // Reads the groups again kGroupReadingFirst and kGroupReadingLast from now. Changes one
    // after another do not put off the first reading; the last one moves to kGroupReadingLast
    // after the latest change.
    void schedule_group_readings() {
        const auto now = Clock::now();
        if (group_readings_.empty()) group_readings_.push_back(now + kGroupReadingFirst);
        if (group_readings_.size() > 1) group_readings_.pop_back();
        group_readings_.push_back(now + kGroupReadingLast);
    }

    // Both groups as the server has them now: plain base searches on this session's connection,
    // outside the map's write transaction (the persist stage's messages meanwhile wait in
    // libldap's queue). nullopt when no reading is due. Throws DirectoryError (the session ends;
    // the next one reads the groups and, as they changed, the directory in full).
    struct GroupsNow {
        std::optional<Entry> migrated, dual;
        bool last = false;  // the last reading planned: the groups decide whatever they say
    };
    std::optional<GroupsNow> due_group_reading() {
        if (group_readings_.empty() || Clock::now() < group_readings_.front()) return std::nullopt;
        group_readings_.pop_front();
        GroupsNow now;
        now.last = group_readings_.empty();
        const auto read = [&](const std::string& dn) {
            std::optional<Entry> group;
            ldap_.search_paged(dn, LDAP_SCOPE_BASE, "(objectClass=*)", followed_group_attributes(),
                               [&](Entry&& e) { group = std::move(e); });
            if (!group) throw DirectoryError(fmt::format("group {} is not readable", dn), false);
            return group;
        };
        if (!d_.migrated_group.empty()) now.migrated = read(d_.migrated_group);
        if (!d_.dual_group.empty()) now.dual = read(d_.dual_group);
        return now;
    }

    // The groups read again after renames: their changes as any group change, then each renamed
    // entry's state from them, once the groups name its new DN, or no longer its old one, or at
    // the last reading (no refint: the old DN stays, and by the directory the user is in no
    // group, as a full read says).
    void apply_group_reading(ViewWriter& writer, GroupsNow& now) {
        // Applied after the messages read with it, as those may be older (the reading then is
        // newer by entryCSN) or newer (it is then skipped, and they stand).
        if (now.migrated && newer_group(Membership::Group::migrated, *now.migrated))
            apply_group_members(writer, Membership::Group::migrated, group_member_values(*now.migrated));
        if (now.dual && newer_group(Membership::Group::dual, *now.dual))
            apply_group_members(writer, Membership::Group::dual, group_member_values(*now.dual));
        for (auto it = held_renames_.begin(); it != held_renames_.end();) {
            const auto person = people_.find(it->first);
            if (person == people_.end()) {  // deleted since
                it = held_renames_.erase(it);
                continue;
            }
            if (!now.last && listed(it->second) && !listed(person->second.dn)) {
                ++it;  // refint not done yet
                continue;
            }
            const State held = person->second.state;
            apply_membership(writer, it->first, person->second);
            if (person->second.state != held)
                log_info("sync: {} renamed from {} to {}: the groups {}: {}", person->second.key, it->second,
                         person->second.dn,
                         listed(person->second.dn) ? "name the new DN" : "do not name the new DN (no refint?)",
                         to_string(person->second.state));
            it = held_renames_.erase(it);
        }
    }

    // How long the persist stage may wait for a message: until the next reading of the groups,
    // else kHeartbeat.
    std::chrono::seconds idle_wait() const {
        if (group_readings_.empty()) return kHeartbeat;
        const auto left = std::chrono::ceil<std::chrono::seconds>(group_readings_.front() - Clock::now());
        return std::clamp(left, std::chrono::seconds(0), kHeartbeat);
    }

    void finish(MapTxn& txn, const SyncCounts& counts, std::int64_t full_sync_time) {
        // Removals held back by max_removals, in this session or by an earlier one: the map then
        // keeps users the directory no longer has, and a full read would be refused by
        // max_removals until the admin's `sync --force`, the follower following nothing meanwhile.
        const auto held_in_map = txn.meta(meta::kDirectoryHeldRemovals);
        // A `sync --force` since this session last wrote its held count (it writes "0") applied
        // every removal held here: this session's count is done with, not to be written again
        // (stats went on saying "removals held back" after the admin forced them).
        if (held_ > 0 && held_written_ > 0 && held_in_map && *held_in_map == "0") {
            held_ = 0;
            held_entries_ = {};
            held_written_ = 0;
        }
        const bool removals_held = held_ > 0 || (held_in_map && !held_in_map->empty() && *held_in_map != "0");
        // A rename waiting for the groups to be read again is held in this session only: a
        // restart resumed from a cookie would keep it so, even when the groups still name the
        // old DN (no refint), where a full read says source.
        const bool renames_pending = !held_renames_.empty();
        if ((contested_keys_ + contested_aliases_ > 0 || renames_pending) && !removals_held) {
            // The map has one entry of an address that several give (as their address, or an
            // alias several users list or that is also an entry's address); the others live only
            // in this session. Resumed from a cookie, a restarted follower would rebuild them from
            // the map, not know them, and would remove the address (or hand it to a later
            // claimant) when its holder lets go of it: no cookie, so a restart reads the
            // directory in full (design 13.5: the map stays equal to the directory).
            // Not while removals are held: that restart would stop following (see above), a
            // worse state than the rare contested restart; the admin's sync --force ends both.
            txn.put_meta(meta::kDirectoryCookie, "");
            if (!cookie_withheld_ && renames_pending)
                log_info("sync: {} renamed, whose state the groups decide: they are read again within 10 s; no "
                         "cookie stored until then, a restart reads the directory in full",
                         held_renames_.size() == 1 ? std::string("a user")
                                                            : fmt::format("{} users", held_renames_.size()));
            else if (!cookie_withheld_)
                log_info("sync: {} addresses are given by more than one entry: no cookie stored while they are, a "
                         "restart reads the directory in full", contested_keys_ + contested_aliases_);
            cookie_withheld_ = true;
        } else if (cookie_) {
            cookie_withheld_ = false;
            // The cookie goes with the changes it covers (design 13.5), and with what it is
            // valid for: this view of this server, and the groups as they are now.
            txn.put_meta(meta::kDirectoryCookie, *cookie_);
            txn.put_meta(meta::kDirectoryCookieView, view_fingerprint());
            txn.put_meta(meta::kDirectoryCookieGroups, fingerprint_groups());
            std::string witnesses;
            for (const auto& w : newest_) witnesses += (witnesses.empty() ? "" : " ") + w.uuid + " " + w.csn;
            txn.put_meta(meta::kDirectoryCookieWitness, witnesses);
            txn.put_meta(meta::kDirectoryCookieDeleted, fmt::format("{}", fmt::join(recently_left_, " ")));
        }
        if (full_sync_time) txn.put_meta(meta::kDirectorySyncedAt, std::to_string(full_sync_time));
        else txn.put_meta(meta::kDirectorySyncedAt, std::to_string(static_cast<std::int64_t>(::time(nullptr))));
        txn.put_meta(meta::kDirectoryUri, ldap_.uri());
        txn.put_meta(meta::kDirectoryFollowing, following_text());
        if (held_) {
            txn.put_meta(meta::kDirectoryHeldRemovals, std::to_string(held_));
            held_written_ = held_;
        }
        if (counts.added + counts.changed + counts.removed + counts.aliases_added + counts.aliases_removed > 0)
            log_info("sync: {} added, {} changed, {} removed, {} aliases added, {} aliases removed{}", counts.added,
                     counts.changed, counts.removed, counts.aliases_added, counts.aliases_removed,
                     counts.removals_held ? fmt::format(", {} removals held", counts.removals_held) : std::string());
        for (const auto& w : counts.warnings) log_warning("sync: {}", w);
        committed_ = counts;
    }

    // Tells the hooks what the last write committed (called once it has).
    void report() {
        if (!hooks_) return;
        if (hooks_->applied) hooks_->applied(committed_);
        if (hooks_->held) hooks_->held(held_);
        committed_ = SyncCounts{};
    }

public:
    struct Stopped {};

private:
    const Config& config_;
    const DirectoryConfig& d_;
    MapStore& store_;
    LdapSession& ldap_;
    const std::atomic<bool>& stop_;
    FilesWatch& files_;
    const FollowHooks* hooks_ = nullptr;
    SyncCounts committed_;  // what finish() wrote, reported once the write commits
    int migrated_id_ = 0, dual_id_ = 0, people_id_ = 0;
    Membership membership_;
    std::vector<std::string> raw_migrated_, raw_dual_;  // the groups' member values as last sent
    std::optional<std::string> cookie_;
    std::set<std::string> said_references_;  // continuation references warned of in this session
    // The people entry with the newest entryCSN this session applied (or loaded with the cookie):
    // stored with the cookie, looked up before a resume (read_witnesses()).
    static constexpr std::size_t kWitnesses = 8, kLeftWitnesses = 32;
    std::vector<CookieWitness> newest_;  // by entryCSN, newest first
    std::vector<std::string> recently_left_;  // entryUUIDs of the last kLeftWitnesses entries that left, oldest first
    // The directory's users as this session knows them: entryUUID -> the entry's view (deletes
    // and renames name the entry by UUID; a group change re-derives the state of its members),
    // DN -> entryUUID (group members are DNs), and key -> the entries giving it, ordered by DN
    // (the first holds it; see holder()).
    using Claim = std::pair<std::string, std::string>;  // DN, entryUUID
    std::unordered_map<std::string, DirectoryUser> people_;
    std::unordered_map<std::string, std::string> by_dn_;
    std::unordered_map<std::string, std::set<Claim>> claims_;
    std::size_t contested_keys_ = 0;  // keys of claims_ with more than one entry
    bool cookie_withheld_ = false;    // said once in the log, until no key is contested
    // alias -> the keys of the users that list it (sorted: the first one holds it).
    std::unordered_map<std::string, std::set<std::string>> alias_claims_;
    std::size_t contested_aliases_ = 0;  // addresses for which alias_contested()
    // The removals and demotions of the last 60 s (within_removal_window).
    struct WindowRemoval {
        Clock::time_point when;
        bool left_directory;  // out of claims_ (counted back for the limit), not moved to the source
    };
    std::deque<WindowRemoval> removals_;
    std::size_t departures_ = 0;  // the entries of removals_ with left_directory, kept with it
    std::size_t held_ = 0;
    std::size_t held_written_ = 0;  // the held count finish() last stored (0: none since the session began)
    Hash128Set held_entries_;  // the entries (entryUUID) counted in held_
    std::size_t users_at_refresh_ = 0;
    std::string groups_fingerprint_;
    std::string since_ = utc_timestamp(::time(nullptr));
    // Entries renamed whose state is kept (moved_by_stale_groups()), entryUUID -> the DN before
    // (normalized), and when the groups are read again for them: refint's rewrite takes
    // milliseconds on an idle server; the second reading is for a busy one.
    static constexpr std::chrono::seconds kGroupReadingFirst{1}, kGroupReadingLast{10};
    std::unordered_map<std::string, std::string> held_renames_;
    std::deque<Clock::time_point> group_readings_;  // earliest first
    bool persisting_ = false;  // in the persist stage: changes come one by one
    std::string migrated_csn_, dual_csn_;  // entryCSN of the groups as last applied (newer_group())
};

// follow() until `stop` is set; MapReplaced and MapUnavailable pass through.
void follow_until_stopped(const Config& config, MapStore& store, const std::atomic<bool>& stop,
                          const FollowHooks& hooks, FilesWatch& files) {
    const DirectoryConfig& d = config.directory;
    unsigned backoff = 1;
    bool ready_sent = false;
    // Polling (no RFC 4533): what each poll of the last 60 s removed and moved back.
    struct PollRemovals {
        std::chrono::steady_clock::time_point when;
        std::size_t removed, demoted;
    };
    std::deque<PollRemovals> poll_removals;
    FollowHooks once = hooks;
    once.ready = [&] {
        if (!ready_sent && hooks.ready) hooks.ready();
        ready_sent = true;
        backoff = 1;
    };
    while (!stop) {
        try {
            LdapSession session(d);
            if (session.supports_control(kSyncRequestOid)) {
                SyncSession sync(config, store, session, stop, files);
                try {
                    sync.run(once);
                } catch (const SyncSession::Stopped&) {
                    log_info("sync: stopping on a signal; the map keeps what was applied");
                    return;
                }
            } else {
                // No RFC 4533 (AD, or a server without syncprov): a full sync every interval,
                // each counting against max_removals what the polls of the last 60 s removed
                // and moved back, as the persist stage's window does: a group emptied a few
                // members a poll would otherwise pass the limit.
                const auto polled_at = std::chrono::steady_clock::now();
                while (!poll_removals.empty() && polled_at - poll_removals.front().when > std::chrono::seconds(60))
                    poll_removals.pop_front();
                SyncOptions options;
                for (const auto& p : poll_removals) {
                    options.earlier_removed += p.removed;
                    options.earlier_demoted += p.demoted;
                }
                const SyncCounts counts = full_sync(config, store, session, options);
                // A rename is no user gone (ViewWriter::remove_unseen): not carried to the next poll.
                if (const std::size_t gone = counts.removed - counts.renamed; gone + counts.demoted)
                    poll_removals.push_back({polled_at, gone, counts.demoted});
                if (hooks.applied) hooks.applied(counts);
                if (hooks.held) hooks.held(0);
                log_info("sync: {} (polling every {} s, the server offers no RFC 4533): {} users, {} added, {} changed, "
                         "{} removed", session.uri(), d.interval_seconds, counts.users, counts.added, counts.changed,
                         counts.removed);
                store.write(sync_context(session.uri()), [&](MapTxn& txn) {
                    txn.put_meta(meta::kDirectoryFollowing,
                                 fmt::format("polling {} every {} s (the server offers no RFC 4533; pid {})",
                                             session.uri(), d.interval_seconds, ::getpid()));
                });
                once.ready();
                pause(stop, files, d.interval_seconds);
                continue;
            }
        } catch (const DirectoryError& e) {
            // A SIGTERM during a read ends it as an error (the connection torn down, or
            // libldap's read giving up): no retry follows, so none is announced.
            if (stop) {
                log_info("sync: stopping on a signal ({}); the map keeps what was applied", e.what());
                return;
            }
            log_warning("sync: {}{}; the map keeps its last good state; retrying in {} s", e.what(),
                        e.transient() ? "" : " (needs the admin)", backoff);
            // `stats` says what the follower is doing: not following, but retrying.
            store.write(sync_context(d.uri), [&](MapTxn& txn) {
                txn.put_meta(meta::kDirectoryFollowing,
                             fmt::format("not following: retrying in {} s (last attempt {}): {} (pid {})", backoff,
                                         utc_timestamp(::time(nullptr)), e.what(), ::getpid()));
            });
        } catch (const RemovalLimitExceeded& e) {
            log_warning("sync: {}; the map keeps its last good state; retrying in {} s", e.what(), backoff);
            store.write(sync_context(d.uri), [&](MapTxn& txn) {
                txn.put_meta(meta::kDirectoryHeldRemovals, std::to_string(e.would_remove + e.would_demote));
                // This process, not the last one that followed, is the one `stats` should name.
                txn.put_meta(meta::kDirectoryFollowing,
                             fmt::format("not following: retrying in {} s (last attempt {}): {} (needs the admin: "
                                         "coexist-map sync --force) (pid {})",
                                         backoff, utc_timestamp(::time(nullptr)), e.what(), ::getpid()));
            });
            if (hooks.held) hooks.held(e.would_remove + e.would_demote);
        }
        if (hooks.retrying) hooks.retrying();
        if (hooks.status) hooks.status(fmt::format("directory unreachable; retrying in {} s", backoff));
        pause(stop, files, backoff);
        backoff = std::min(backoff * 2, 60u);
    }
}

}  // namespace

FollowEnd follow(const Config& config, MapStore& store, const std::atomic<bool>& stop, const FollowHooks& hooks) {
    FilesWatch files(store);
    try {
        follow_until_stopped(config, store, stop, hooks, files);
        return FollowEnd::stopped;
    } catch (const MapReplaced&) {
    } catch (const MapUnavailable&) {
        // A write met the replaced files before a wait looked (MapStore::write, Transaction):
        // the same end, said the same way. Any other map error is the caller's to report.
        if (!store.files_replaced()) throw;
    }
    // Every write since the files changed was refused, so nothing reached the map now in place.
    // Once the caller has closed the store and no other program has the old lock.mdb open, the
    // next program to open the map takes its ids from the file renamed in.
    log_error("sync: {}/data.mdb or lock.mdb was replaced or removed since the follower opened the map: "
              "stopped following, nothing written to the map; exiting so that no program keeps the old files "
              "open and the map in place can be read; start 'coexist-map sync --follow' again "
              "(coexist-sync.service restarts it)",
              store.path());
    return FollowEnd::map_replaced;
}

}  // namespace coexist::directory
