// Telling systemd (Type=notify units) where the daemon is in its life: "ready" once its sockets
// listen, so Before=postfix.service really waits for them, and "stopping" at shutdown. Does
// nothing when not started by systemd (no NOTIFY_SOCKET in the environment).
#pragma once

namespace coexist {

// READY=1: every listening socket is open and the daemon is about to serve.
void notify_ready() noexcept;
// STOPPING=1: the daemon has stopped serving and is shutting down.
void notify_stopping() noexcept;

}  // namespace coexist
