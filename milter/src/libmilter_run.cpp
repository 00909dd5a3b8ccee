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
    int result = MI_FAILURE;
    std::thread libmilter([&result] { result = smfi_main(); });
    libmilter.join();
    return result;
}

}  // namespace coexist::milter
