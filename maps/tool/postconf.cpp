#include "postconf.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <vector>

#include "coexist/system_error.hpp"

extern char** environ;

namespace coexist::tool {

namespace {

// The most of postconf's answer we keep: one setting's value is far shorter.
constexpr std::size_t kMaxOutput = 64 * 1024;

// Where postconf lives when PATH does not say (Debian installs it in /usr/sbin, which a
// non-root PATH often lacks).
constexpr const char* kFallbackPostconf = "/usr/sbin/postconf";

// Runs `program` (looked up in PATH when it has no '/') with stdout into a pipe and stderr to
// /dev/null (postconf warns there about a missing master.cf, which says nothing about main.cf).
// Returns the exit status, or -errno when it could not be started.
int run(const std::string& program, const std::vector<std::string>& args, std::string& output) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return -errno;
    FileDescriptor read_end(fds[0]), write_end(fds[1]);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, write_end.get(), STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(program.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) return -rc;
    write_end.reset();
    char buf[4096];
    for (;;) {
        const ssize_t n = ::read(read_end.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (output.size() < kMaxOutput) output.append(buf, static_cast<std::size_t>(n));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// postconf -c config_dir ARGS..., PATH first, then /usr/sbin: its whole output, or why not.
PostconfResult postconf(const std::string& config_dir, std::vector<std::string> args) {
    struct stat st {};
    const std::string main_cf = config_dir + "/main.cf";
    if (::stat(main_cf.c_str(), &st) != 0)
        return {std::nullopt, fmt::format("{}: {}", main_cf, std::strerror(errno))};
    args.insert(args.begin(), {"-c", config_dir});
    std::string output;
    int rc = run("postconf", args, output);
    if (rc == -ENOENT) {
        output.clear();
        rc = run(kFallbackPostconf, args, output);
    }
    if (rc == -ENOENT) return {std::nullopt, "postconf not found (in PATH or /usr/sbin)"};
    if (rc < 0) return {std::nullopt, fmt::format("cannot run postconf: {}", std::strerror(-rc))};
    if (rc != 0) return {std::nullopt, fmt::format("postconf -c {} failed (exit status {})", config_dir, rc)};
    return {output, {}};
}

}  // namespace

PostconfResult read_postfix_setting(const std::string& config_dir, const std::string& name) {
    PostconfResult r = postconf(config_dir, {"-x", "-h", name});
    if (r.value)
        while (!r.value->empty() && (r.value->back() == '\n' || r.value->back() == '\r')) r.value->pop_back();
    return r;
}

std::optional<std::vector<MasterOverride>> read_master_overrides(const std::string& config_dir,
                                                                 std::string& problem) {
    struct stat st {};
    const std::string master_cf = config_dir + "/master.cf";
    if (::stat(master_cf.c_str(), &st) != 0) {
        problem = fmt::format("{}: {}", master_cf, std::strerror(errno));
        return std::nullopt;
    }
    const PostconfResult r = postconf(config_dir, {"-P"});
    if (!r.value) {
        problem = r.problem;
        return std::nullopt;
    }
    std::vector<MasterOverride> overrides;
    std::string_view rest = *r.value;
    while (!rest.empty()) {
        const std::size_t end = rest.find('\n');
        const std::string_view line = rest.substr(0, end);
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
        const std::size_t equals = line.find(" = ");
        const std::size_t slash = line.rfind('/', equals);
        if (equals == std::string_view::npos || slash == std::string_view::npos) continue;
        overrides.push_back({std::string(line.substr(0, slash)), std::string(line.substr(slash + 1, equals - slash - 1)),
                             std::string(line.substr(equals + 3))});
    }
    return overrides;
}

}  // namespace coexist::tool
