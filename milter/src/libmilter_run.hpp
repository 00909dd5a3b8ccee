// Running libmilter's smfi_main() so that SIGHUP cannot stop the filter.
#pragma once

#include <functional>

namespace coexist::milter {

// Runs smfi_main() until SIGTERM or SIGINT and returns its result (MI_SUCCESS / MI_FAILURE).
//
// libmilter's signal thread sigwait()s for SIGHUP, SIGTERM and SIGINT and stops the filter on
// any of them, so "systemctl reload" or a stray "kill -HUP" would take the milter down and
// Postfix would answer 451 until someone noticed. smfi_main() blocks the three signals in the
// thread that calls it, and a blocked signal is queued, never ignored, so the sigwait() sees
// it. Hence: smfi_main() runs in a thread of its own, and this (main) thread keeps SIGHUP
// unblocked with the disposition SIG_IGN. The kernel checks a process-directed signal against
// the main thread: ignored and unblocked there, SIGHUP is discarded when sent, before any
// thread can wait for it. SIGTERM and SIGINT stay blocked here, so they reach libmilter.
//
// `ready` runs once the signals are arranged and before smfi_main() starts: the place to tell
// systemd READY=1. A SIGTERM sent the moment after READY is then already blocked, so it waits
// for libmilter's sigwait() instead of killing the process with its default action.
//
// Call from the program's main thread, before any other thread is started.
int run_smfi_main_ignoring_sighup(const std::function<void()>& ready);

}  // namespace coexist::milter
