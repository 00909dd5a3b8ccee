// Shared test scaffolding: a temporary directory that cleans up after itself, the standard
// test configuration, and a way to run the real coexist-map binary in another process.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "coexist/config.hpp"

namespace coexist::test {

class TempDir {
public:
    TempDir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "coexist-test-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::string& path() const { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    std::string write(const std::string& name, const std::string& text) const {
        std::ofstream(file(name), std::ios::binary) << text;
        return file(name);
    }

private:
    std::string path_;
};

// Two managed domains: contoso.com (alias contoso.net, unknown users relayed) and fabrikam.com
// (authoritative: unknown users rejected).
inline std::string standard_config_text(const std::string& map_path, const std::string& extra_routing = "") {
    return "[map]\npath = " + map_path + "\n\n[routing]\nrecipient_delimiter = +\nkeep_extension = yes\n"
           "unknown_recipient = relay\nloop_limit = 3\n" + extra_routing +
           "\n[domain contoso.com]\nrouting_domain = o365.contoso.com\naliases = contoso.net\n"
           "\n[domain fabrikam.com]\nrouting_domain = fabrikam.onmicrosoft.com\nunknown_recipient = reject\n";
}

inline Config standard_config(const std::string& map_path, const std::string& extra_routing = "") {
    return parse_config(standard_config_text(map_path, extra_routing), "test.ini");
}

struct ToolResult {
    int status = -1;
    std::string out;
};

// Runs coexist-map in a child process (another process, as an admin would), stdout captured.
// `stdin_file`, when given, is its standard input.
inline ToolResult run_tool(const std::string& config_file, const std::vector<std::string>& args,
                           const std::string& stdin_file = "") {
    std::string cmd = std::string(COEXIST_MAP_BINARY) + " -c '" + config_file + "'";
    for (const auto& a : args) cmd += " '" + a + "'";
    if (!stdin_file.empty()) cmd += " < '" + stdin_file + "'";
    cmd += " 2>&1";
    ToolResult r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) return r;
    std::array<char, 4096> buf{};
    std::size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
    const int st = ::pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
}

}  // namespace coexist::test
