// The one place that creates the map's directory and keeps its files usable by the daemons.
// The daemons run as an unprivileged user in the directory's group; coexist-map usually runs as
// root. Whoever opens the map (writer or reader, root or not), LMDB may create lock.mdb (and a
// writer data.mdb) with the opener's owner and umask; a lock.mdb the daemons cannot write defers
// all managed mail. So every opener calls repair_map_files after opening.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace coexist {

// Creates the map directory for `coexist-map init` if it is missing: mode 0750 plus setgid, so
// files created in it later (by root too) take its group; group `group` when given (the daemons'
// primary group). An existing directory is left as it is. Throws MapUnavailable.
void create_map_directory(const std::string& dir, std::optional<gid_t> group);

// Gives data.mdb (0640) and lock.mdb (0660) the directory's group. Best effort and cheap when
// nothing is to be done (two lstats): only the owner or root may change them, and a failure
// here must not stop a lookup that may still work. Changes only regular files, never what a
// symbolic link points at. Never throws.
void repair_map_files(const std::string& dir) noexcept;

// Throws MapUnavailable when data.mdb or lock.mdb exists but is not a regular file (a symbolic
// link, a FIFO, a directory): LMDB would open whatever it points at, and write its lock header
// into it. A missing file is fine (LMDB creates it).
void refuse_irregular_map_files(const std::string& dir);

// While alive, the calling thread opens and creates files as the map directory's owner
// (setfsuid(2), setfsgid(2)) when the process runs as root and that owner is not root: on a
// directory-fed relay the directory belongs to coexist-sync, which could otherwise swap a
// symbolic link in for lock.mdb between our check and LMDB's open(2) and have a root
// coexist-map write into any file. As that user, it reaches only what that user can write.
// Files LMDB creates meanwhile belong to the owner, as when the owner runs coexist-map.
// Without supplementary groups meanwhile (root's would still reach files of its groups). Throws
// MapUnavailable when the identity cannot be taken (root without CAP_SETUID): never as root then.
class MapOwnerIdentity {
public:
    explicit MapOwnerIdentity(const std::string& dir);
    ~MapOwnerIdentity();
    MapOwnerIdentity(const MapOwnerIdentity&) = delete;
    MapOwnerIdentity& operator=(const MapOwnerIdentity&) = delete;

    // The owner's uid when the thread acts as the owner (for an error that says so).
    std::optional<uid_t> acting_as() const { return switched_ ? std::optional<uid_t>(uid_) : std::nullopt; }

private:
    void restore() noexcept;

    std::vector<gid_t> saved_groups_;
    bool switched_ = false;
    uid_t uid_ = 0;
    uid_t old_uid_ = 0;
    gid_t old_gid_ = 0;
};

}  // namespace coexist
