// bench_null_milter: a libmilter filter that accepts everything and changes nothing, the floor
// of any libmilter design (issue 13). bench/relay.py runs it beside coexist-milter in the same
// Postfix, so the difference between the two is coexist's own work, not libmilter's.
//
//   bench_null_milter --socket inet:PORT@127.0.0.1|unix:/path [--no-reply] [--add-header] [--edits]
//
// It registers the callbacks coexist-milter registers (envfrom, envrcpt, data, header, eom,
// abort, close), opens its socket through coexist-milter's own open_milter_socket (so an inet
// socket gets the same TCP_NODELAY tuning) and runs until SIGTERM/SIGINT.
//
// Without --no-reply it has no xxfi_negotiate: libmilter's default negotiation (Postfix skips
// the stages that have no callback, and waits for a reply at every other one), as coexist-milter
// did before issue 13. With --no-reply it negotiates as coexist-milter does (below).
//
// It gives libmilter's worker threads coexist-milter's stack size (worker_threads.hpp): a
// saving at libmilter's level that any filter can have, so the floor has it too.
//
// --add-header: at end of message it adds one X-Coexist-Trace header, built as coexist-milter
// builds its own (trace_header_value), and changes nothing else. That is the one change
// coexist-milter makes to every message of a managed domain (design: the loop guard, "whatever
// the action"), so this floor separates what Postfix's cleanup spends on inserting a header from
// what coexist-milter's own callbacks cost. The recipient changes of a rewrite are not
// imitated: in the null configurations virtual_alias_maps does that routing.
//
// --edits: everything coexist-milter sends Postfix at end of message, with no map and no log:
// the header of --add-header, and for each migrated recipient of the bench's users
// (bench_users.hpp: decided from the address alone) the delete of the recipient as received
// and the add of its routing address with ORCPT, as coexist-milter makes them. The recipients
// are kept per session from RCPT, as coexist-milter keeps its plan. This is the floor of the
// design itself: what is left between it and coexist-milter is the map lookup, the log lines
// and coexist-milter's bookkeeping.
#include <libmilter/mfapi.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <string>
#include <vector>

#include "bench_users.hpp"
#include "esmtp_params.hpp"
#include "milter_socket.hpp"
#include "negotiation.hpp"
#include "worker_threads.hpp"
#include "trace_header.hpp"

namespace {

// ---- the --no-reply negotiation: coexist-milter's own, by construction ----------------------
// With --no-reply the null filter negotiates through coexist-milter's choose_protocol
// (milter/src/negotiation.cpp, compiled in): the same no-reply stages (MAIL and headers
// always, DATA over a unix socket only: over TCP a DATA without reply leaves cleanup's first
// header write to Nagle against the filter's delayed ACK, ~40 ms a message, measured by
// bench/relay.py's author with strace: 2.96 s for 30 messages against 1.55 s), the same
// actions and the same macro lists, stage by stage (the queue id, and {rcpt_addr} at RCPT).
// So "coexist-milter against the null milter with the same negotiation" compares their
// callbacks, not their protocols.
using coexist::milter::choose_protocol;
using coexist::milter::kMacroStages;
using coexist::milter::kRequiredActions;
using coexist::milter::macro_list;
using coexist::milter::ProtocolChoice;

bool g_reply_to_data = true;  // false on a unix socket (set in main, before smfi_main)

// The no-reply stages granted; every connection comes from the same Postfix, so one value
// serves all. libmilter requires SMFIS_NOREPLY from a callback whose stage was negotiated
// without reply (it logs an error per call otherwise).
std::atomic<unsigned long> g_no_reply{0};
// -----------------------------------------------------------------------------------------------

// The answer of a callback at a stage whose reply flag is `nr_flag`.
sfsistat answer(unsigned long nr_flag) {
    return (g_no_reply.load(std::memory_order_relaxed) & nr_flag) != 0 ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

bool g_add_header = false;  // --add-header or --edits (set in main, before smfi_main)
bool g_edits = false;       // --edits

// --edits: the migrated recipients of the current message, as received (argv[0] of RCPT).
struct Session {
    std::vector<std::string> migrated;
};

Session* session_of(SMFICTX* ctx) { return static_cast<Session*>(smfi_getpriv(ctx)); }

sfsistat on_envfrom(SMFICTX* ctx, char**) {
    if (Session* s = session_of(ctx)) s->migrated.clear();
    return answer(SMFIP_NR_MAIL);
}

// Never ACCEPT: it would skip eom.
sfsistat on_envrcpt(SMFICTX* ctx, char** argv) {
    if (!g_edits || argv == nullptr || argv[0] == nullptr) return answer(SMFIP_NR_RCPT);
    if (!coexist::bench::migrated(coexist::milter::strip_brackets(argv[0]))) return answer(SMFIP_NR_RCPT);
    try {
        Session* s = session_of(ctx);
        if (s == nullptr) {
            s = new Session;
            if (smfi_setpriv(ctx, s) != MI_SUCCESS) {
                delete s;
                return SMFIS_TEMPFAIL;  // the run then fails its delivery check
            }
        }
        s->migrated.emplace_back(argv[0]);
    } catch (const std::exception&) {
        return SMFIS_TEMPFAIL;
    }
    return answer(SMFIP_NR_RCPT);
}

sfsistat on_data(SMFICTX*) { return answer(SMFIP_NR_DATA); }
sfsistat on_header(SMFICTX*, char*, char*) { return answer(SMFIP_NR_HDR); }

// --edits: coexist-milter's edits for one migrated recipient (MessagePlan::edits): the delete of
// the recipient as received, the add of userN@o365.contoso.com with the parameters coexist-milter
// gives it (added_recipient_params: the sender's address as ORCPT).
bool rewrite(SMFICTX* ctx, const std::string& as_received) {
    const std::string_view address = coexist::milter::strip_brackets(as_received);
    const std::string local(address.substr(0, address.size() - coexist::bench::kManagedDomain.size()));
    const std::string added = "<" + local + std::string(coexist::bench::kRoutingDomain) + ">";
    const std::string params = coexist::milter::added_recipient_params({}, address);
    return smfi_delrcpt(ctx, const_cast<char*>(as_received.c_str())) == MI_SUCCESS &&
           smfi_addrcpt_par(ctx, const_cast<char*>(added.c_str()), const_cast<char*>(params.c_str())) == MI_SUCCESS;
}

sfsistat on_eom(SMFICTX* ctx) {
    if (!g_add_header) return SMFIS_CONTINUE;
    try {
        if (Session* s = session_of(ctx)) {
            for (const auto& r : s->migrated)
                if (!rewrite(ctx, r)) return SMFIS_TEMPFAIL;
            s->migrated.clear();
        }
        const char* id = smfi_getsymval(ctx, const_cast<char*>("i"));
        const std::string value =
            coexist::milter::trace_header_value("bench.test", id ? id : "NOQUEUE", std::time(nullptr));
        if (smfi_addheader(ctx, const_cast<char*>(coexist::milter::kTraceHeaderName.data()),
                           const_cast<char*>(value.c_str())) != MI_SUCCESS)
            return SMFIS_TEMPFAIL;  // the run then fails its delivery check: never a silent difference
    } catch (const std::exception&) {
        return SMFIS_TEMPFAIL;
    }
    return SMFIS_CONTINUE;
}
sfsistat on_abort(SMFICTX* ctx) {
    if (Session* s = session_of(ctx)) s->migrated.clear();
    return SMFIS_CONTINUE;
}
sfsistat on_close(SMFICTX* ctx) {
    delete session_of(ctx);
    smfi_setpriv(ctx, nullptr);
    return SMFIS_CONTINUE;
}

// xxfi_negotiate, as coexist-milter's (milter/src/filter.cpp, on_negotiate): f0/f1 are the
// actions and protocol steps Postfix offers; *pf1 arrives holding libmilter's SMFIP_NO* choice.
sfsistat on_negotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long, unsigned long,
                      unsigned long* pf0, unsigned long* pf1, unsigned long*, unsigned long*) {
    const ProtocolChoice choice = choose_protocol(f0, f1, *pf1, g_reply_to_data);
    if (!choice.macro_lists || choice.no_reply() == 0) {
        std::fprintf(stderr, "bench_null_milter: MTA offers actions 0x%lx, protocol 0x%lx: "
                     "not what --no-reply needs\n", f0, f1);
        return SMFIS_REJECT;  // refuses the connection: the benchmark would not measure what it says
    }
    for (const int stage : kMacroStages)
        if (smfi_setsymlist(ctx, stage, const_cast<char*>(macro_list(stage))) != MI_SUCCESS) {
            std::fprintf(stderr, "bench_null_milter: smfi_setsymlist(%d) failed\n", stage);
            return SMFIS_REJECT;
        }
    *pf0 = choice.actions;
    *pf1 = choice.steps;
    g_no_reply.store(choice.no_reply(), std::memory_order_relaxed);
    return SMFIS_CONTINUE;
}

int usage() {
    std::fprintf(stderr, "usage: bench_null_milter --socket inet:PORT@127.0.0.1|unix:/path [--no-reply] "
                 "[--add-header] [--edits]\n");
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::string socket;
    bool no_reply = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--socket") == 0 && i + 1 < argc) socket = argv[++i];
        else if (std::strcmp(argv[i], "--no-reply") == 0) no_reply = true;
        else if (std::strcmp(argv[i], "--add-header") == 0) g_add_header = true;
        else if (std::strcmp(argv[i], "--edits") == 0) g_add_header = g_edits = true;
        else return usage();
    }
    if (socket.empty()) return usage();
    g_reply_to_data = socket.rfind("unix:", 0) != 0 && socket.rfind("local:", 0) != 0;
    smfiDesc d{};
    d.xxfi_name = const_cast<char*>("bench-null-milter");
    d.xxfi_version = SMFI_VERSION;
    d.xxfi_flags = kRequiredActions;  // as coexist-milter; the negotiation adds SMFIF_SETSYMLIST
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
    std::fprintf(stderr, "bench_null_milter: listening on %s (%s%s)\n", socket.c_str(),
                 no_reply ? "no-reply negotiation" : "default negotiation",
                 g_edits ? ", makes coexist-milter's edits" : g_add_header ? ", adds a header" : "");
    // coexist-milter's worker thread stacks (milter/src/worker_threads.hpp), by construction:
    // a libmilter-wide saving that any filter can have, so the floor has it too.
    try {
        coexist::milter::set_default_thread_stack(coexist::milter::kWorkerThreadStackBytes);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_null_milter: %s\n", e.what());
        return 2;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 3;
}
