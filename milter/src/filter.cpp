#include "filter.hpp"

#include <ctime>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "coexist/log.hpp"
#include "coexist/route.hpp"
#include "message_plan.hpp"
#include "replies.hpp"
#include "trace_header.hpp"

namespace coexist::milter {

namespace {

const FilterEnvironment* g_env = nullptr;

// ESMTP parameters we look at per RCPT; Postfix forwards only what it accepted anyway.
constexpr int kMaxRcptParams = 16;

// Per-SMTP-session state, reached only through smfi_getpriv: libmilter runs the callbacks of
// one session on whichever worker thread is free.
struct Session {
    MessagePlan message;
};

Session& session(SMFICTX* ctx) {
    if (auto* s = static_cast<Session*>(smfi_getpriv(ctx))) return *s;
    auto owned = std::make_unique<Session>();
    if (smfi_setpriv(ctx, owned.get()) != MI_SUCCESS) throw std::runtime_error("smfi_setpriv failed");
    return *owned.release();
}

std::string queue_id(SMFICTX* ctx) {
    const char* id = smfi_getsymval(ctx, const_cast<char*>("i"));
    return id && *id ? std::string(id) : std::string("NOQUEUE");
}

void set_reply(SMFICTX* ctx, const Reply& r) {
    smfi_setreply(ctx, const_cast<char*>(r.code), const_cast<char*>(r.extended),
                  const_cast<char*>(r.text.c_str()));
}

// The reply and log line for a callback that failed inside. `what` is only valid during the
// call (it points into the exception being handled), and nothing here may throw.
void defer_after_internal_error(SMFICTX* ctx, const char* stage, const char* what) noexcept {
    try {
        log_error("{}: {}: internal error, deferring: {}", queue_id(ctx), stage, what);
    } catch (...) {
    }
    try {
        set_reply(ctx, message_tempfail_reply("internal error"));
    } catch (...) {
    }
}

// Every callback runs inside this: an exception becomes a temporary failure (and a log line),
// never a crash of the filter and never a silently accepted message. The log line is written
// inside the handler, while the exception (and the text e.what() points into) still exists.
template <typename Body>
sfsistat guarded(SMFICTX* ctx, const char* stage, Body&& body) noexcept {
    try {
        return body();
    } catch (const std::exception& e) {
        defer_after_internal_error(ctx, stage, e.what());
    } catch (...) {
        defer_after_internal_error(ctx, stage, "unknown exception");
    }
    return SMFIS_TEMPFAIL;
}

sfsistat on_envfrom(SMFICTX* ctx, char**) {
    // A new transaction: whatever an earlier message of this session left is gone.
    return guarded(ctx, "MAIL", [&] {
        session(ctx).message.clear();
        return SMFIS_CONTINUE;
    });
}

sfsistat rcpt_refused(SMFICTX* ctx, std::string_view as_received, const RoutingDecision& d) {
    const std::string line = decision_log_line(queue_id(ctx), as_received, d);
    if (d.action == Action::reject) {
        log_info("{}", line);
        set_reply(ctx, unknown_recipient_reply(as_received, d.detail));
        return SMFIS_REJECT;
    }
    log_warning("{}", line);
    set_reply(ctx, lookup_failure_reply(as_received));
    return SMFIS_TEMPFAIL;
}

sfsistat on_envrcpt(SMFICTX* ctx, char** argv) {
    // Never SMFIS_ACCEPT here: it would skip end of message, where the recipients change.
    return guarded(ctx, "RCPT", [&] {
        if (argv == nullptr || argv[0] == nullptr) return SMFIS_CONTINUE;
        // argv[0] is RCPT TO as the client wrote it: brackets, quotes, a source route, any case.
        // route() decides on its canonical form (canonical_address.hpp, design 13.2), the key
        // Postfix's own tables (and so the socketmap) are asked for; smfi_delrcpt at the end
        // still gets as_received, which cleanup internalizes the same way (cleanup_milter.c,
        // cleanup_del_rcpt()).
        const std::string_view as_received = argv[0];
        RoutingDecision d = route(*g_env->config, *g_env->map, as_received);
        switch (d.action) {
            case Action::foreign:
                return SMFIS_CONTINUE;
            case Action::reject:
            case Action::tempfail:
                return rcpt_refused(ctx, as_received, d);
            case Action::relay:
            case Action::transport:  // the recipient stays; transport_maps choose the next hop
            case Action::rewrite:
            case Action::dual:
                break;
        }
        std::vector<std::string> args;
        for (int i = 1; i <= kMaxRcptParams && argv[i] != nullptr; ++i) args.emplace_back(argv[i]);
        if (!session(ctx).message.add({std::string(as_received), parse_rcpt_params(args), std::move(d)})) {
            log_warning("{}: rcpt=<{}>: more than {} managed recipients, deferring", queue_id(ctx),
                        as_received, MessagePlan::kMaxRecipients);
            set_reply(ctx, {"452", "4.5.3", "Too many recipients"});
            return SMFIS_TEMPFAIL;
        }
        return SMFIS_CONTINUE;
    });
}

sfsistat on_header(SMFICTX* ctx, char* name, char*) {
    return guarded(ctx, "HEADER", [&] {
        if (name != nullptr) session(ctx).message.saw_header(name);
        return SMFIS_CONTINUE;
    });
}

void apply(SMFICTX* ctx, const EnvelopeEdit& e) {
    const int rc = e.kind == EnvelopeEdit::Kind::delete_recipient
        ? smfi_delrcpt(ctx, const_cast<char*>(e.address.c_str()))
        : smfi_addrcpt_par(ctx, const_cast<char*>(e.address.c_str()), const_cast<char*>(e.params.c_str()));
    if (rc != MI_SUCCESS)
        throw std::runtime_error(std::string(e.kind == EnvelopeEdit::Kind::delete_recipient
                                                 ? "smfi_delrcpt " : "smfi_addrcpt_par ") + e.address + " failed");
}

sfsistat finish_message(SMFICTX* ctx, MessagePlan& plan) {
    if (!plan.managed()) return SMFIS_CONTINUE;
    const std::string qid = queue_id(ctx);
    const unsigned limit = g_env->config->loop_limit;
    if (plan.exceeds_loop_limit(limit)) {
        log_warning("{}: reject: mail forwarding loop, trace_headers={}, loop_limit={}", qid,
                    plan.trace_count(), limit);
        set_reply(ctx, loop_reply(plan.trace_count(), limit));
        return SMFIS_REJECT;
    }
    for (const auto& edit : plan.edits()) apply(ctx, edit);
    const std::string trace = trace_header_value(g_env->hostname, qid, std::time(nullptr));
    if (smfi_addheader(ctx, const_cast<char*>(kTraceHeaderName.data()), const_cast<char*>(trace.c_str())) !=
        MI_SUCCESS)
        throw std::runtime_error("smfi_addheader failed");
    for (const auto& r : plan.recipients()) log_info("{}", decision_log_line(qid, r.as_received, r.decision));
    return SMFIS_CONTINUE;
}

sfsistat on_eom(SMFICTX* ctx) {
    return guarded(ctx, "END-OF-MESSAGE", [&] {
        MessagePlan& plan = session(ctx).message;
        struct ClearAtExit {
            MessagePlan& p;
            ~ClearAtExit() { p.clear(); }
        } clear{plan};
        return finish_message(ctx, plan);
    });
}

// Does nothing, on purpose. Without a DATA callback Postfix still sends the DATA-stage macros,
// but no command it waits for: nothing is written back, our ACK is delayed (~40 ms) and Nagle
// holds Postfix's next packet until it comes. Answering DATA puts a reply, and the ACK, on the
// wire at once: 87 -> over 400 messages/s over inet (bench/relay_throughput.py).
sfsistat on_data(SMFICTX*) { return SMFIS_CONTINUE; }

sfsistat on_abort(SMFICTX* ctx) {
    if (auto* s = static_cast<Session*>(smfi_getpriv(ctx))) s->message.clear();
    return SMFIS_CONTINUE;
}

sfsistat on_close(SMFICTX* ctx) {
    delete static_cast<Session*>(smfi_getpriv(ctx));
    smfi_setpriv(ctx, nullptr);
    return SMFIS_CONTINUE;
}

}  // namespace

void install_environment(const FilterEnvironment* environment) { g_env = environment; }

smfiDesc filter_description() {
    smfiDesc d{};
    d.xxfi_name = const_cast<char*>("coexist-milter");
    d.xxfi_version = SMFI_VERSION;
    d.xxfi_flags = SMFIF_ADDHDRS | SMFIF_DELRCPT | SMFIF_ADDRCPT_PAR;
    // MAIL only to reset per-message state (two messages in one session), RCPT to decide,
    // DATA only to keep the TCP exchange in lock-step (see on_data), headers to count trace
    // headers, end of message to apply; abort/close to clean up. connect, helo, eoh, body and
    // unknown stay NULL: libmilter then asks Postfix not to send them (SMFIP_NO*).
    d.xxfi_envfrom = on_envfrom;
    d.xxfi_envrcpt = on_envrcpt;
    d.xxfi_data = on_data;
    d.xxfi_header = on_header;
    d.xxfi_eom = on_eom;
    d.xxfi_abort = on_abort;
    d.xxfi_close = on_close;
    return d;
}

}  // namespace coexist::milter
