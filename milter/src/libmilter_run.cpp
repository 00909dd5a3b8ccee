#include "libmilter_run.hpp"

#include <libmilter/mfapi.h>
#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <thread>

#include "coexist/system_error.hpp"

namespace coexist::milter {

void arrange_signals_for_smfi_main() {
    struct sigaction ignore{};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    if (::sigaction(SIGHUP, &ignore, nullptr) != 0) throw SystemError("sigaction(SIGHUP)", errno);

    sigset_t stop_signals, hangup;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigemptyset(&hangup);
    sigaddset(&hangup, SIGHUP);
    // The smfi_main thread inherits this mask; libmilter then adds SIGHUP to it there.
    if (int rc = ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr); rc != 0)
        throw SystemError("pthread_sigmask", rc);
    if (int rc = ::pthread_sigmask(SIG_UNBLOCK, &hangup, nullptr); rc != 0)
        throw SystemError("pthread_sigmask", rc);
}

int run_smfi_main(const std::function<void()>& ready) {
    ready();
    // A stop that came while the milter started (blocked, so pending): stop now, cleanly.
    // Handed to smfi_main, its signal thread could close the socket before libmilter's
    // listener opens it, and the listener's new bind then fails: exit 3 for a plain stop.
    sigset_t pending;
    if (::sigpending(&pending) == 0 && (sigismember(&pending, SIGTERM) == 1 || sigismember(&pending, SIGINT) == 1))
        return MI_SUCCESS;
    int result = MI_FAILURE;
    std::thread libmilter([&result] { result = smfi_main(); });
    libmilter.join();
    return result;
}

}  // namespace coexist::milter
