// The one place that creates the map's directory and keeps its files usable by the daemons.
// The daemons run as an unprivileged user in the directory's group; coexist-map usually runs as
// root. Whoever opens the map (writer or reader, root or not), LMDB may create lock.mdb (and a
// writer data.mdb) with the opener's owner and umask; a lock.mdb the daemons cannot write defers
// all managed mail. So every opener calls repair_map_files after opening.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace coexist {

// Creates the map directory for `coexist-map init` if it is missing: mode 0750 plus setgid, so
// files created in it later (by root too) take its group; group `group` when given (the daemons'
// primary group). An existing directory is left as it is. Throws MapUnavailable.
void create_map_directory(const std::string& dir, std::optional<gid_t> group);

// Gives data.mdb (0640) and lock.mdb (0660) the directory's group. Best effort and cheap when
// nothing is to be done (two stats): only the owner or root may change them, and a failure here
// must not stop a lookup that may still work. Never throws.
void repair_map_files(const std::string& dir) noexcept;

}  // namespace coexist
