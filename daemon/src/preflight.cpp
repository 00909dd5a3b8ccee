#include "coexist/preflight.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <stdexcept>
#include <fmt/format.h>

#include "coexist/accounts.hpp"
#include "coexist/privileges.hpp"
#include "coexist/socket_spec.hpp"
#include "coexist/system_error.hpp"
#include "coexist/map_reader.hpp"

namespace coexist {

namespace {

// The most of the child's error text we read back: one log line's worth.
constexpr std::size_t kMaxChildMessage = 2048;

void check_user(const std::string& user, std::vector<std::string>& problems, bool& user_exists) {
    try {
        user_exists = find_user(user).has_value();
        if (!user_exists) problems.push_back(fmt::format("run-as user '{}' does not exist", user));
    } catch (const std::exception& e) {
        problems.push_back(fmt::format("cannot look up run-as user '{}': {}", user, e.what()));
    }
}

std::string who(const std::string& user) {
    return ::geteuid() == 0 ? "user '" + user + "'" : "the current user (not root: no user switch)";
}

// Runs `probe` in a child process that has dropped to `user` (when running as root; the daemon
// does so too), so that the parent opens nothing as that user and holds no LMDB environment
// across fork(). Returns nullopt when the probe returned, else why not: the text of what it
// threw, or how the child died. `what` names the probe in the messages of a failed pipe or fork.
std::optional<std::string> failure_as(const std::string& user, const char* what, const std::function<void()>& probe) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return fmt::format("cannot check {}: pipe: {}", what, std::strerror(errno));
    FileDescriptor read_end(fds[0]), write_end(fds[1]);
    std::fflush(nullptr);  // the child must not write our buffered output a second time
    const pid_t child = ::fork();
    if (child < 0) return fmt::format("cannot check {}: fork: {}", what, std::strerror(errno));
    if (child == 0) {
        read_end.reset();
        std::string error;
        try {
            drop_privileges(user);  // no-op unless root: then the daemon would not switch either
            probe();
            ::_exit(0);
        } catch (const std::exception& e) {
            error = e.what();
        } catch (...) {
            error = "unknown error";
        }
        error.resize(std::min(error.size(), kMaxChildMessage));
        const ssize_t written = ::write(write_end.get(), error.data(), error.size());
        (void)written;  // nothing better to do: the exit status still says it failed
        ::_exit(1);
    }
    write_end.reset();
    std::string message;
    char buf[512];
    ssize_t n;
    while ((n = ::read(read_end.get(), buf, sizeof buf)) != 0) {
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (message.size() < kMaxChildMessage) message.append(buf, static_cast<std::size_t>(n));
    }
    int status = 0;
    while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return std::nullopt;
    if (WIFSIGNALED(status))
        message = fmt::format("killed by signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
    if (message.empty()) message = "failed";
    return message;
}

// The configuration file, read as the run-as user: the shipped units start the daemons as it
// (User=), so each reads coexist.ini itself at start, and root's reading of it here proves
// nothing. Unreadable, the daemon exits 2 at every start, which the units do not retry.
void check_config_file(const Config& config, const std::string& user, std::vector<std::string>& problems) {
    if (config.source.empty()) return;  // not from a file (tests)
    const auto failure = failure_as(user, "the configuration file", [&] {
        FileDescriptor file(::open(config.source.c_str(), O_RDONLY | O_CLOEXEC));
        char byte;
        if (!file || ::read(file.get(), &byte, 1) < 0) throw std::runtime_error(std::strerror(errno));
    });
    if (failure)
        problems.push_back(fmt::format("configuration {} cannot be read as {}: {} (the shipped units start the daemon "
                                       "as that user, and it would exit 2: it needs read permission on the file and "
                                       "search permission on each directory above it)",
                                       config.source, who(user), *failure));
}

// One lookup as the run-as user: what the daemon does with every managed recipient.
void check_map(const Config& config, const std::string& user, std::vector<std::string>& problems) {
    const auto failure = failure_as(user, "the map", [&] {
        MapReader map(config.map_path);
        map.find("postmaster@" + config.domains.front().name);
    });
    if (failure)
        problems.push_back(fmt::format("map {} cannot be read as {}: {}", config.map_path, who(user),
                                       failure->rfind("killed by", 0) == 0 ? "the lookup was " + *failure : *failure));
}

}  // namespace

std::vector<std::string> socket_problems(const SocketConfig& socket) {
    std::vector<std::string> problems;
    try {
        const auto spec = parse_socket_spec(socket.spec);
        if (!spec || spec->family != SocketSpec::Family::unix_path || socket.group.empty()) return problems;
        if (!find_group(socket.group))
            problems.push_back(fmt::format("socket group '{}' for {} does not exist", socket.group, socket.spec));
    } catch (const std::exception& e) {
        try {
            problems.push_back(fmt::format("cannot look up socket group '{}': {}", socket.group, e.what()));
        } catch (...) {
        }
    }
    return problems;
}

std::vector<std::string> socket_warnings(const SocketConfig& socket) {
    std::vector<std::string> warnings;
    try {
        const auto spec = parse_socket_spec(socket.spec);
        if (!spec) return warnings;
        // "inet:PORT" and "inet:PORT@" alike: libmilter's syntax reads a missing host as every address.
        const auto at = socket.spec.find('@');
        if (spec->family != SocketSpec::Family::unix_path && (at == std::string::npos || at + 1 == socket.spec.size()))
            warnings.push_back(fmt::format(
                "socket {} has no @host: it listens on every address of this host, and anyone who reaches port {} "
                "may ask who is migrated; write {}@{} for a Postfix on this host (or name the wildcard address "
                "if that is meant)",
                socket.spec, spec->port, socket.spec.substr(0, at),
                spec->family == SocketSpec::Family::inet ? "127.0.0.1" : "::1"));
        if (spec->family == SocketSpec::Family::unix_path && (socket.mode & 0022) == 0)
            warnings.push_back(fmt::format(
                "socket {} has mode {:04o}: connecting takes write permission, so only its owner and root can "
                "connect; Postfix (user postfix) could not, and every message would wait in the queue (0660 with "
                "socket_group = postfix)",
                socket.spec, static_cast<unsigned>(socket.mode)));
        if (spec->family == SocketSpec::Family::unix_path) {
            // The daemon creates the socket, not its directory: without one it stops at start.
            // systemd's RuntimeDirectory= (contrib/systemd) makes /run/coexist only when the unit
            // starts, so this is a warning and says so.
            const auto slash = spec->path.rfind('/');
            const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : spec->path.substr(0, slash);
            struct stat st {};
            const bool found = ::stat(dir.c_str(), &st) == 0;
            if (!found && errno == ENOENT)
                warnings.push_back(fmt::format(
                    "socket {}: directory {} does not exist, and the daemon does not create it: it would stop "
                    "at start (systemd's RuntimeDirectory= in the units creates /run/coexist when they start)",
                    socket.spec, dir));
            else if (found && !S_ISDIR(st.st_mode))
                warnings.push_back(fmt::format("socket {}: {} is not a directory: the daemon would stop at start",
                                               socket.spec, dir));
        }
    } catch (...) {
    }
    return warnings;
}

std::vector<std::string> preflight_problems(const Config& config, const PreflightTarget& target) {
    std::vector<std::string> problems;
    try {
        bool user_exists = false;
        check_user(target.user, problems, user_exists);
        for (const auto& socket : target.sockets)
            for (auto& p : socket_problems(socket)) problems.push_back(std::move(p));
        // Without the user there is no one to read the map as; that problem is reported already.
        if (user_exists || ::geteuid() != 0) {
            check_config_file(config, target.user, problems);
            check_map(config, target.user, problems);
        }
    } catch (const std::exception& e) {
        problems.push_back(fmt::format("pre-flight check failed: {}", e.what()));
    }
    return problems;
}

}  // namespace coexist
