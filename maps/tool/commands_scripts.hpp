// `coexist-map commands gam|exo` (design section 10): the script each other system needs for the
// users the map routes, so a batch's Google side (the forward to the routing address) and its
// Exchange Online side (the routing address as a proxy address) are printed, not typed by hand.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

#include "coexist/config.hpp"

namespace coexist::tool {

// Which system's script: GAM (GAM7 / GAMADV-XTD3) for Google Workspace, Exchange Online
// PowerShell for Microsoft 365.
enum class ScriptSystem { gam, exo };

// Prints the script for the users of `batch` (all users when not given) whose effective state
// (a directory override wins) is `state` (every state when not given), in key order:
//   gam: migrated -> forward on, Gmail archives its copy; dual -> forward on, Gmail keeps its
//        copy in the inbox; source -> forward off and the forwarding address removed (the undo);
//   exo: migrated and dual -> the routing address added to the mailbox as a secondary (smtp:)
//        proxy address; source -> removed again (only when it is local@routing_domain: an
//        explicit target may be an address Exchange Online made itself).
// The first lines are comments: what the script is for, the batch, the state, the count and the
// time it was made (SOURCE_DATE_EPOCH when set, for reproducible output). Throws DataError
// (exit 2) for an unknown batch, a bad state or an empty selection.
int commands(const Config& c, ScriptSystem system, const std::optional<std::string>& batch,
             const std::optional<std::string>& state, std::ostream& out);

// `text` as one POSIX sh word that the shell reads back byte for byte: in single quotes, each
// ' written as '\'' (POSIX.1-2017 XCU 2.2.2: nothing inside single quotes is special).
std::string sh_quote(std::string_view text);

// `text` as one PowerShell single-quoted string literal (about_Quoting_Rules): nothing expands
// inside; a quote is written twice. PowerShell also ends such a string at the typographic single
// quotes U+2018..U+201B, so each of those is doubled as well.
std::string powershell_quote(std::string_view text);

}  // namespace coexist::tool
