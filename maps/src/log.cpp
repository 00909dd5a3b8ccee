#include "coexist/log.hpp"

#include <string>

#include "coexist/log_text.hpp"

namespace coexist {

void open_log(const char* ident, bool also_stderr) {
    openlog(ident, LOG_PID | LOG_NDELAY | (also_stderr ? LOG_PERROR : 0), LOG_MAIL);
}

void log_line(int priority, std::string_view line) {
    // The last guard: a line may carry addresses from the network that no caller made
    // loggable; they must not forge a second line or grow one without bound.
    constexpr std::size_t kMaxLogLine = 2048;
    syslog(priority, "%s", loggable(line, kMaxLogLine).c_str());
}

}  // namespace coexist
