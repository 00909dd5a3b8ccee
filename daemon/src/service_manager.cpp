#include "coexist/service_manager.hpp"

#include <systemd/sd-daemon.h>

#include "coexist/log.hpp"

namespace coexist {

namespace {

void notify(const char* state) noexcept {
    // 0: not under systemd, nothing to tell; < 0: systemd would time the start-up out, which a
    // log line explains better than a silent wait.
    const int rc = sd_notify(0, state);
    if (rc < 0) {
        try {
            log_warning("sd_notify({}) failed: error {}", state, -rc);
        } catch (...) {
        }
    }
}

}  // namespace

void notify_ready() noexcept { notify("READY=1"); }
void notify_stopping() noexcept { notify("STOPPING=1"); }

}  // namespace coexist
