// Scaffolding for the map fault tests: a map with a few users made by coexist-map's own
// commands, a way to run a body in a child process (so a SIGBUS is a failed check, not the end
// of the test run), and a way to run it as the daemons' unprivileged user.
#pragma once

#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include "commands.hpp"
#include "fixture.hpp"

namespace coexist::test {

// A map with ann (migrated) and bob (source) at contoso.com, erin at fabrikam.com, and enough
// other users that data.mdb spans well beyond its two meta pages.
struct FaultMap {
    TempDir dir;
    std::string config_file;
    Config config;
    explicit FaultMap(const std::string& extra = "") {
        config_file = dir.write("coexist.ini", standard_config_text(dir.file("map")) + extra);
        config = load_config(config_file);
        std::ostringstream out;
        tool::init(config, out);
        std::string csv = "address,state,aliases\nann@contoso.com,migrated,anna@contoso.com\n"
                          "bob@contoso.com,source,\nerin@fabrikam.com,migrated,\n";
        for (int i = 0; i < 200; ++i) csv += "filler" + std::to_string(i) + "@contoso.com,source,\n";
        tool::import_csv(config, dir.write("users.csv", csv), std::nullopt, false, out);
        tool::set(config, "bob@contoso.com", "dual", std::nullopt, std::nullopt, out);
    }
    std::string data_file() const { return config.map_path + "/data.mdb"; }
    std::string lock_file() const { return config.map_path + "/lock.mdb"; }
    std::uintmax_t data_size() const { return std::filesystem::file_size(data_file()); }

    // `head -c BYTES data.mdb > t && mv t data.mdb`: a new, shorter file under the same name.
    void replace_with_prefix(std::size_t bytes) const {
        std::ifstream in(data_file(), std::ios::binary);
        std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const std::string tmp = dir.file("truncated");
        std::ofstream(tmp, std::ios::binary) << all.substr(0, bytes);
        std::filesystem::rename(tmp, data_file());
    }
};

// Runs `body` in a forked child and returns its exit status, or 128 + the signal that ended it
// (135 for SIGBUS). The body returns 0 for success, anything else names the failed step.
template <typename F>
int in_child(F&& body) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        int rc = 99;
        try {
            rc = body();
        } catch (...) {
            rc = 98;
        }
        ::_exit(rc);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The daemons' side on Debian: user nobody, group nogroup.
inline constexpr uid_t kNobody = 65534;
inline constexpr gid_t kNogroup = 65534;

// Drops the calling (child) process to nobody:nogroup; false if that fails.
inline bool become_nobody() {
    return ::setgroups(0, nullptr) == 0 && ::setgid(kNogroup) == 0 && ::setuid(kNobody) == 0;
}

}  // namespace coexist::test
