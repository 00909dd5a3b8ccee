// The pre-flight check behind `-n` (coexist-milter, coexist-policyd; `coexist-map check` reuses
// it): what would make the daemon fail or defer all mail once started, found before a restart.
#pragma once

#include <string>
#include <vector>

#include "coexist/config.hpp"

namespace coexist {

// What a daemon needs from the system besides its configuration.
struct PreflightTarget {
    std::string user;                   // the run-as user ("user" key)
    std::vector<SocketConfig> sockets;  // its listeners: a unix socket's group must exist
};

// Checks, for an already loaded and valid `config`:
//   - the run-as user exists;
//   - the group of every unix socket exists;
//   - the configuration file (config.source) can be read as the run-as user, who reads it at
//     start under the shipped units (User=);
//   - the map answers one lookup as the run-as user (in a child process that drops to that user
//     when running as root, so the parent never opens the map: no LMDB environment across
//     fork(), and no lock.mdb created as root).
// Returns one human-readable line per problem; empty when all is well. Never throws.
std::vector<std::string> preflight_problems(const Config& config, const PreflightTarget& target);

// The problems of one listener alone: the group of a unix socket that does not exist (one line
// each, as above); empty for an inet socket or one without a group. Never throws.
std::vector<std::string> socket_problems(const SocketConfig& socket);

// What of one listener is allowed but likely a mistake, one line each (said by -n and by
// `coexist-map check`, which still pass): an inet socket without "@host", which libmilter's
// syntax reads as every address of the host, so that anyone who reaches the port may ask who
// is migrated; a unix socket whose mode lets neither its group nor others connect (connecting
// takes write permission: Postfix, running as postfix, could not, and with
// milter_default_action = tempfail every message would wait in the queue); a unix socket whose
// directory does not exist (the daemon would stop at start; systemd may create it later, so it
// is not an error). Never throws.
std::vector<std::string> socket_warnings(const SocketConfig& socket);

}  // namespace coexist
