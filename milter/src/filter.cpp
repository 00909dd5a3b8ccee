#include "filter.hpp"

#include <ctime>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "coexist/log.hpp"
#include "coexist/log_text.hpp"
#include "coexist/route.hpp"
#include "coexist/socket_spec.hpp"
#include "esmtp_params.hpp"
#include "message_plan.hpp"
#include "negotiation.hpp"
#include "replies.hpp"
#include "trace_header.hpp"

namespace coexist::milter {

namespace {

const FilterEnvironment* g_env = nullptr;
// Whether DATA keeps its reply: on a TCP socket it must (see on_data); set by
// install_environment from the configured socket.
bool g_reply_to_data = true;

// ESMTP parameters we look at per RCPT; Postfix forwards only what it accepted anyway.
constexpr int kMaxRcptParams = 16;

// Per-SMTP-session state, reached only through smfi_getpriv: libmilter runs the callbacks of
// one session on whichever worker thread is free.
struct Session {
    MessagePlan message;
    // The stages negotiated without a reply (SMFIP_NR_*) on this connection: their callbacks
    // must return SMFIS_NOREPLY. 0 when negotiation did not run or asked for none.
    unsigned long no_reply = 0;
};

Session* existing_session(SMFICTX* ctx) noexcept { return static_cast<Session*>(smfi_getpriv(ctx)); }

Session& session(SMFICTX* ctx) {
    if (auto* s = static_cast<Session*>(smfi_getpriv(ctx))) return *s;
    auto owned = std::make_unique<Session>();
    if (smfi_setpriv(ctx, owned.get()) != MI_SUCCESS) throw std::runtime_error("smfi_setpriv failed");
    return *owned.release();
}

// The queue id as libmilter holds it (valid until the next macros of the session), no copy.
// It starts log lines ("4B0C1D: to=<...>, action=..."): one that is not Postfix's letters and
// digits (header_safe_queue_id()'s rule) could forge the fields after it, and is not shown.
const char* queue_id(SMFICTX* ctx) noexcept {
    const char* id = smfi_getsymval(ctx, const_cast<char*>("i"));
    if (!id || !*id) return "NOQUEUE";
    return is_header_safe_queue_id(id) ? id : "BADQUEUEID";
}

// The answer of a stage whose callback always continues: none at all when it was negotiated
// without a reply (negotiation.hpp), else "continue".
sfsistat continue_or_no_reply(const Session* s, unsigned long no_reply_flag) noexcept {
    return s && (s->no_reply & no_reply_flag) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

// A decision worth its own log line: one that changes something (rewrite, dual, transport,
// reject, tempfail; in shadow mode, would change). relay passes the recipient on unchanged:
// logged only with [routing] log_lookups = yes.
bool logged(const RoutingDecision& d) {
    return g_env->config->log_lookups || (d.action != Action::relay && d.action != Action::foreign);
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

// Once per connection, before anything else: see negotiation.hpp. The session is created here,
// where a failure can still fall back to the old protocol, so that the stages without a reply
// never have to allocate. Nothing is logged: a line per connection would cost what the
// negotiation saves.
sfsistat on_negotiate(SMFICTX* ctx, unsigned long offered_actions, unsigned long offered_steps,
                      unsigned long, unsigned long, unsigned long* actions, unsigned long* steps,
                      unsigned long*, unsigned long*) noexcept {
    const ProtocolChoice choice = choose_protocol(offered_actions, offered_steps, *steps, g_reply_to_data);
    *actions = choice.actions;
    Session* s = nullptr;
    try {
        s = &session(ctx);
    } catch (...) {
        // No per-connection memory: every stage answers, as before negotiation existed; the
        // RCPT callback defers managed recipients if it cannot store them either.
        return SMFIS_CONTINUE;
    }
    if (choice.macro_lists)
        for (const int stage : kMacroStages)
            // A failure leaves Postfix's default list for that stage, which holds `i` too.
            (void)smfi_setsymlist(ctx, stage, const_cast<char*>(macro_list(stage)));
    s->no_reply = choice.no_reply();
    *steps = choice.steps;
    return SMFIS_CONTINUE;
}

sfsistat on_envfrom(SMFICTX* ctx, char**) noexcept {
    // A new transaction: whatever an earlier message of this session left is gone. No session
    // yet means no earlier message; RCPT creates one when it has a recipient to keep.
    Session* s = existing_session(ctx);
    if (s) s->message.clear();
    return continue_or_no_reply(s, SMFIP_NR_MAIL);
}

// One decision, counted once. `recipient`: the text as received, or an Address already parsed.
template <typename Recipient>
RoutingDecision decide(const Recipient& recipient) {
    if (!g_env->metrics) return route(*g_env->config, *g_env->map, recipient);
    RoutingDecision d = route_counted(*g_env->config, *g_env->map, recipient, *g_env->metrics);
    // Counted at RCPT, where the decision is taken (in shadow mode as the decision it would
    // have been): a message aborted later keeps its count.
    if (g_env->decisions) g_env->decisions->count(d.action, g_env->config->shadow);
    return d;
}

// The decision for one RCPT. argv[0] is the argument as the client wrote it; Postfix reads it
// with its own RFC 822 tokenizer (blanks and comments inside the brackets dropped: <ann@contoso.com >,
// <ann(x)@contoso.com>) and resolves it (percent hack, bang path: ann%contoso.com@localhost),
// and delivers to what it read. {rcpt_addr} is that reading (smtpd_milter.c: the resolved
// recipient, RFC 821 quoted, lowercased). The argument decides when it is an address of a
// managed domain, since it keeps the extension as the sender wrote it; otherwise Postfix's
// reading does, so that mail Postfix delivers to ann@contoso.com is routed as ann's. Without
// the macro (an MTA that does not send it), the argument alone, as before.
RoutingDecision decide_recipient(SMFICTX* ctx, std::string_view as_received) {
    const std::optional<Address> written = parse_address(as_received);
    if (written && g_env->config->find_domain(written->domain)) return decide(*written);
    const char* read_by_postfix = smfi_getsymval(ctx, const_cast<char*>("{rcpt_addr}"));
    if (read_by_postfix == nullptr || *read_by_postfix == '\0' || as_received == read_by_postfix)
        return written ? decide(*written) : decide(as_received);
    // Postfix's reading has lost its source route already: none is stripped again (address.hpp).
    const std::optional<Address> read = parse_rewritten_address(read_by_postfix);
    RoutingDecision d = read ? decide(*read) : decide(std::string_view(read_by_postfix));
    if (d.action != Action::foreign)
        // Shown as it came: decision_log_fields() and reply_safe() make any text safe.
        d.detail = fmt::format("Postfix reads it as <{}>{}{}", read_by_postfix, d.detail.empty() ? "" : ", ", d.detail);
    return d;
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
        RoutingDecision d = decide_recipient(ctx, as_received);
        const bool shadow = g_env->config->shadow;
        if (d.action == Action::foreign) return SMFIS_CONTINUE;
        // relay, transport (the recipient stays; transport_maps choose the next hop), rewrite
        // and dual are planned for the end of the message.
        // Shadow mode refuses nothing, not even on map trouble (the point is to change nothing):
        // the recipient is planned like the others and its would-be refusal logged at the end.
        if (!shadow && (d.action == Action::reject || d.action == Action::tempfail))
            return rcpt_refused(ctx, as_received, d);
        std::vector<std::string> args;
        for (int i = 1; i <= kMaxRcptParams && argv[i] != nullptr; ++i) args.emplace_back(argv[i]);
        if (!session(ctx).message.add({std::string(as_received), parse_rcpt_params(args), std::move(d)})) {
            if (shadow) {
                log_warning("{}: {}: more than {} managed recipients, not logged, shadow=yes",
                            queue_id(ctx), logged_recipient(as_received), MessagePlan::kMaxRecipients);
                return SMFIS_CONTINUE;
            }
            log_warning("{}: {}: more than {} managed recipients, deferring", queue_id(ctx),
                        logged_recipient(as_received), MessagePlan::kMaxRecipients);
            set_reply(ctx, {"452", "4.5.3", "Too many recipients"});
            return SMFIS_TEMPFAIL;
        }
        return SMFIS_CONTINUE;
    });
}

sfsistat on_header(SMFICTX* ctx, char* name, char*) noexcept {
    // Without a session no recipient was kept, and an unmanaged message needs no count.
    Session* s = existing_session(ctx);
    if (s && name != nullptr) s->message.saw_header(name);
    return continue_or_no_reply(s, SMFIP_NR_HDR);
}

void apply(SMFICTX* ctx, const EnvelopeEdit& e) {
    const int rc = e.kind == EnvelopeEdit::Kind::delete_recipient
        ? smfi_delrcpt(ctx, const_cast<char*>(e.address.c_str()))
        : smfi_addrcpt_par(ctx, const_cast<char*>(e.address.c_str()), const_cast<char*>(e.params.c_str()));
    // The address goes into the error's log line: bracketed as a decision line's fields are,
    // so that it cannot forge an action= there either.
    if (rc != MI_SUCCESS)
        throw std::runtime_error(fmt::format("{} <{}> failed",
                                             e.kind == EnvelopeEdit::Kind::delete_recipient ? "smfi_delrcpt" : "smfi_addrcpt_par",
                                             loggable_bracketed(strip_brackets(e.address))));
}

sfsistat finish_message(SMFICTX* ctx, MessagePlan& plan) {
    if (!plan.managed()) return SMFIS_CONTINUE;
    const char* const qid = queue_id(ctx);
    const unsigned limit = g_env->config->loop_limit;
    // The loop guard holds in shadow mode too: a message that already carries loop_limit trace
    // headers has passed coexist relays that do route (a relay not in shadow mode, the other
    // system sending it back); letting it through would let a loop run, which is never the
    // "nothing changes" that shadow mode promises. A shadow relay adds no header, so it never
    // feeds a loop itself.
    if (plan.exceeds_loop_limit(limit)) {
        log_warning("{}: reject: mail forwarding loop, trace_headers={}, loop_limit={}", qid,
                    plan.trace_count(), limit);
        set_reply(ctx, loop_reply(plan.trace_count(), limit));
        return SMFIS_REJECT;
    }
    if (g_env->config->shadow) {
        // What would have happened, one line per recipient; no recipient, no header changed.
        for (const auto& r : plan.recipients())
            if (logged(r.decision)) log_info("{}, shadow=yes", decision_log_line(qid, r.as_received, r.decision));
        return SMFIS_CONTINUE;
    }
    for (const auto& edit : plan.edits()) apply(ctx, edit);
    const std::string trace = trace_header_value(g_env->hostname, qid, std::time(nullptr));
    if (smfi_addheader(ctx, const_cast<char*>(kTraceHeaderName.data()), const_cast<char*>(trace.c_str())) !=
        MI_SUCCESS)
        throw std::runtime_error("smfi_addheader failed");
    for (const auto& r : plan.recipients())
        if (logged(r.decision)) log_info("{}", decision_log_line(qid, r.as_received, r.decision));
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
// wire at once: 87 -> over 400 messages/s over inet (the relay bench, bench/relay.py). The same
// holds with SMFIP_NR_DATA: smtpd flushes DATA when it hands the connection to cleanup
// (milter8_send), and cleanup's headers and end of message wait behind it. So DATA is answered
// over inet and inet6; over a unix socket (no Nagle) it is negotiated without a reply.
//
// Where DATA is answered, a message without a recipient of a managed domain (all of them
// foreign: a smart host's outbound mail) is accepted here: the milter has nothing to do at its
// end (no trace header, no loop guard, no edit), and SMFIS_ACCEPT spares the rest of its milter
// conversation. Postfix then sends this milter none of its headers and no end of message
// (milter8.c: MILTER8_STAT_ACCEPT_MSG, "No more events for this message"), only an ABORT when
// the transaction ends, and the next MAIL starts afresh. A session that could not be made
// holds no recipient either (RCPT defers those it cannot store).
sfsistat on_data(SMFICTX* ctx) noexcept {
    const Session* s = existing_session(ctx);
    if (s && (s->no_reply & SMFIP_NR_DATA)) return SMFIS_NOREPLY;
    return s && s->message.managed() ? SMFIS_CONTINUE : SMFIS_ACCEPT;
}

sfsistat on_abort(SMFICTX* ctx) noexcept {
    if (Session* s = existing_session(ctx)) s->message.clear();
    return SMFIS_CONTINUE;
}

sfsistat on_close(SMFICTX* ctx) {
    delete static_cast<Session*>(smfi_getpriv(ctx));
    smfi_setpriv(ctx, nullptr);
    return SMFIS_CONTINUE;
}

}  // namespace

void install_environment(const FilterEnvironment* environment) {
    g_env = environment;
    const auto spec = environment ? parse_socket_spec(environment->config->milter.socket.spec) : std::nullopt;
    g_reply_to_data = !(spec && spec->family == SocketSpec::Family::unix_path);
}

smfiDesc filter_description() {
    smfiDesc d{};
    d.xxfi_name = const_cast<char*>("coexist-milter");
    d.xxfi_version = SMFI_VERSION;
    d.xxfi_flags = SMFIF_ADDHDRS | SMFIF_DELRCPT | SMFIF_ADDRCPT_PAR;
    // MAIL only to reset per-message state (two messages in one session), RCPT to decide,
    // DATA to keep the TCP exchange in lock-step and to let go of a message with no managed
    // recipient (see on_data), headers to count trace headers, end of message to apply;
    // abort/close to clean up. connect, helo, eoh, body and unknown stay NULL: libmilter then
    // asks Postfix not to send them (SMFIP_NO*). negotiate asks for no reply where the answer
    // is always "continue" (negotiation.hpp).
    d.xxfi_negotiate = on_negotiate;
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
