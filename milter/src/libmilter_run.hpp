// Running libmilter's smfi_main() so that SIGHUP cannot stop the filter.
#pragma once

#include <functional>

namespace coexist::milter {

// Makes this (the main) thread's signals what run_smfi_main() needs; call it first, before the
// milter socket opens and before any other thread starts. Throws SystemError if sigaction or
// pthread_sigmask fails.
//
// libmilter's signal thread sigwait()s for SIGHUP, SIGTERM and SIGINT and stops the filter on
// any of them, so "systemctl reload" or a stray "kill -HUP" would take the milter down and
// Postfix would answer 451 until someone noticed. smfi_main() blocks the three signals in the
// thread that calls it, and a blocked signal is queued, never ignored, so the sigwait() sees
// it. Hence: smfi_main() runs in a thread of its own, and this (main) thread keeps SIGHUP
// unblocked with the disposition SIG_IGN. The kernel checks a process-directed signal against
// the main thread: ignored and unblocked there, SIGHUP is discarded when sent, before any
// thread can wait for it. SIGTERM and SIGINT are blocked here from the start, so one that comes
// while the milter starts up (its socket already open, Postfix already connecting) waits for
// libmilter's sigwait() and stops the filter cleanly, instead of ending the process by the
// default action.
void arrange_signals_for_smfi_main();

// Runs smfi_main() until SIGTERM or SIGINT and returns its result (MI_SUCCESS / MI_FAILURE);
// MI_SUCCESS at once, without starting libmilter, when one of them came during start-up.
// `ready` runs once before: the place to tell systemd READY=1. Call from the main thread,
// after arrange_signals_for_smfi_main().
int run_smfi_main(const std::function<void()>& ready);

}  // namespace coexist::milter
