#include "coexist/log.hpp"

#include <cstdio>
#include <string>

namespace coexist {

void open_log(const char* ident, bool also_stderr) {
    openlog(ident, LOG_PID | LOG_NDELAY | (also_stderr ? LOG_PERROR : 0), LOG_MAIL);
}

void log_line(int priority, std::string_view line) {
    // Bound what one log line can carry: addresses come from the network.
    constexpr std::size_t kMaxLogLine = 2048;
    std::string text(line.substr(0, kMaxLogLine));
    // Addresses that reach a log line may carry control bytes; never let them forge a line.
    for (char& c : text)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    syslog(priority, "%s", text.c_str());
}

}  // namespace coexist
