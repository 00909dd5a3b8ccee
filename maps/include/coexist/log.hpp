// Mail-log style logging: syslog facility mail, one line per event, "QUEUEID: key=value, ...".
#pragma once

#include <fmt/format.h>
#include <string_view>
#include <syslog.h>

namespace coexist {

// ident: program name in syslog. also_stderr: copy every line to standard error (tests, or
// running by hand); systemd captures syslog already, so units leave it off.
void open_log(const char* ident, bool also_stderr);

void log_line(int priority, std::string_view line);

template <typename... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
    log_line(LOG_INFO, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_warning(fmt::format_string<Args...> f, Args&&... args) {
    log_line(LOG_WARNING, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_error(fmt::format_string<Args...> f, Args&&... args) {
    log_line(LOG_ERR, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace coexist
