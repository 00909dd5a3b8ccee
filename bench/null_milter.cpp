// bench_null_milter: a libmilter filter that accepts everything and changes nothing, the floor
// of any libmilter design (issue 13). bench/relay.py runs it beside coexist-milter in the same
// Postfix, so the difference between the two is coexist's own work, not libmilter's.
//
//   bench_null_milter --socket inet:PORT@127.0.0.1|unix:/path [--no-reply]
//
// It registers the callbacks coexist-milter registers (envfrom, envrcpt, data, header, eom,
// abort, close), opens its socket through coexist-milter's own open_milter_socket (so an inet
// socket gets the same TCP_NODELAY tuning) and runs until SIGTERM/SIGINT.
//
// Without --no-reply it has no xxfi_negotiate: libmilter's default negotiation (Postfix skips
// the stages that have no callback, and waits for a reply at every other one), as coexist-milter
// did before issue 13. With --no-reply it negotiates kNoReplyProtocol below.
#include <libmilter/mfapi.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "milter_socket.hpp"

namespace {

// ---- the --no-reply negotiation, in one place -------------------------------------------------
// Align these with coexist-milter's xxfi_negotiate (milter/src/filter.cpp) when it lands, so
// the floor asks Postfix for exactly what coexist-milter asks for.
//
// No reply at MAIL and at each header, whose answer is always "continue"; RCPT (where coexist
// rejects or defers) and end of message (where it edits) keep their reply. The stages without
// a callback are not sent at all.
//
// DATA keeps its reply (no SMFIP_NR_DATA), measured: smtpd sends DATA, then cleanup sends the
// headers over the same TCP connection. With no reply to DATA nothing carries the milter's ACK
// back, so Nagle holds cleanup's first header write until the milter's delayed ACK, ~40 ms:
// in one SMTP session of 30 messages (strace of this filter), 2.96 s with SMFIP_NR_DATA and
// 1.55 s without (default negotiation: 1.56 s); a smart host's throughput halved. MAIL needs
// no reply because smtpd buffers it and writes it with RCPT; the headers, with end of message.
constexpr unsigned long kNoReplyProtocol =
    SMFIP_NR_MAIL | SMFIP_NR_HDR |
    SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOBODY | SMFIP_NOEOH | SMFIP_NOUNKNOWN;

// The macros asked for per stage (smfi_setsymlist): only the queue id at end of message (for the
// log line). An empty list has no effect (measured: Postfix still sent its milter_*_macros
// defaults), so the other stages name a macro Postfix never defines, "{none}": it then sends
// an empty macro packet.
struct MacroList {
    int stage;
    const char* names;
};
constexpr MacroList kNoReplyMacros[] = {
    {SMFIM_CONNECT, "{none}"}, {SMFIM_HELO, "{none}"}, {SMFIM_ENVFROM, "{none}"}, {SMFIM_ENVRCPT, "{none}"},
    {SMFIM_DATA, "{none}"},    {SMFIM_EOH, "{none}"},  {SMFIM_EOM, "i"},
};

// The actions coexist-milter declares (it may use them at end of message); the null filter
// never uses them but asks for the same, so Postfix treats both alike.
constexpr unsigned long kActions = SMFIF_ADDHDRS | SMFIF_DELRCPT | SMFIF_ADDRCPT_PAR;
// -----------------------------------------------------------------------------------------------

// Set once the MTA granted kNoReplyProtocol; every connection comes from the same Postfix, so
// one flag serves all. libmilter requires SMFIS_NOREPLY from a callback whose stage was
// negotiated without reply (it logs an error per call otherwise).
std::atomic<bool> g_no_reply{false};

// The answer of a callback at a stage whose reply flag is `nr_flag`.
sfsistat answer(unsigned long nr_flag) {
    return g_no_reply.load(std::memory_order_relaxed) && (kNoReplyProtocol & nr_flag) != 0 ? SMFIS_NOREPLY
                                                                                          : SMFIS_CONTINUE;
}

sfsistat on_envfrom(SMFICTX*, char**) { return answer(SMFIP_NR_MAIL); }
sfsistat on_envrcpt(SMFICTX*, char**) { return answer(SMFIP_NR_RCPT); }  // never ACCEPT: it would skip eom
sfsistat on_data(SMFICTX*) { return answer(SMFIP_NR_DATA); }
sfsistat on_header(SMFICTX*, char*, char*) { return answer(SMFIP_NR_HDR); }
sfsistat on_eom(SMFICTX*) { return SMFIS_CONTINUE; }
sfsistat on_abort(SMFICTX*) { return SMFIS_CONTINUE; }
sfsistat on_close(SMFICTX*) { return SMFIS_CONTINUE; }

// xxfi_negotiate: f0/f1 are the actions and protocol steps Postfix offers; pf0/pf1 what we take.
sfsistat on_negotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                      unsigned long* pf0, unsigned long* pf1, unsigned long* pf2, unsigned long* pf3) {
    const unsigned long actions = kActions | SMFIF_SETSYMLIST;
    if ((f0 & actions) != actions || (f1 & kNoReplyProtocol) != kNoReplyProtocol) {
        std::fprintf(stderr, "bench_null_milter: MTA offers actions 0x%lx, protocol 0x%lx: "
                     "not what --no-reply needs\n", f0, f1);
        return SMFIS_REJECT;  // refuses the connection: the benchmark would not measure what it says
    }
    for (const auto& m : kNoReplyMacros) {
        if (smfi_setsymlist(ctx, m.stage, const_cast<char*>(m.names)) != MI_SUCCESS) {
            std::fprintf(stderr, "bench_null_milter: smfi_setsymlist(%d) failed\n", m.stage);
            return SMFIS_REJECT;
        }
    }
    *pf0 = actions;
    *pf1 = kNoReplyProtocol;
    *pf2 = 0;
    *pf3 = 0;
    g_no_reply.store(true, std::memory_order_relaxed);
    return SMFIS_CONTINUE;
}

int usage() {
    std::fprintf(stderr, "usage: bench_null_milter --socket inet:PORT@127.0.0.1|unix:/path [--no-reply]\n");
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::string socket;
    bool no_reply = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--socket") == 0 && i + 1 < argc) socket = argv[++i];
        else if (std::strcmp(argv[i], "--no-reply") == 0) no_reply = true;
        else return usage();
    }
    if (socket.empty()) return usage();
    smfiDesc d{};
    d.xxfi_name = const_cast<char*>("bench-null-milter");
    d.xxfi_version = SMFI_VERSION;
    d.xxfi_flags = no_reply ? kActions | SMFIF_SETSYMLIST : kActions;
    d.xxfi_envfrom = on_envfrom;
    d.xxfi_envrcpt = on_envrcpt;
    d.xxfi_data = on_data;
    d.xxfi_header = on_header;
    d.xxfi_eom = on_eom;
    d.xxfi_abort = on_abort;
    d.xxfi_close = on_close;
    if (no_reply) d.xxfi_negotiate = on_negotiate;
    if (smfi_register(d) != MI_SUCCESS) {
        std::fprintf(stderr, "bench_null_milter: smfi_register failed\n");
        return 2;
    }
    try {
        // Mode 0666: Postfix's smtpd and cleanup (user postfix) connect to a unix socket.
        coexist::milter::open_milter_socket(coexist::SocketConfig{socket, "", 0666}, "");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_null_milter: %s\n", e.what());
        return 2;
    }
    std::fprintf(stderr, "bench_null_milter: listening on %s (%s)\n", socket.c_str(),
                 no_reply ? "no-reply negotiation" : "default negotiation");
    return smfi_main() == MI_SUCCESS ? 0 : 3;
}
