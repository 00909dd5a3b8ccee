// What the milter remembers about one message between RCPT and end of message, and the
// envelope edits it makes at the end: no libmilter in here, so it is unit-tested directly.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "coexist/route.hpp"
#include "esmtp_params.hpp"

namespace coexist::milter {

// One accepted recipient of a managed domain, as received and as decided.
struct PlannedRecipient {
    std::string as_received;  // argv[0] of xxfi_envrcpt, exactly (smfi_delrcpt needs it so, less a source route)
    RcptParams params;        // the sender's NOTIFY/ORCPT
    RoutingDecision decision; // relay, rewrite or dual
};

struct EnvelopeEdit {
    enum class Kind { delete_recipient, add_recipient };
    Kind kind;
    std::string address;  // delete: as received; add: "<routing address>"
    std::string params;   // add: "NOTIFY=... ORCPT=..."; delete: empty
    bool operator==(const EnvelopeEdit&) const = default;
};

class MessagePlan {
public:
    // A message may not carry more managed recipients than this (Postfix's own
    // smtpd_recipient_limit defaults to 1000); beyond it, recipients are deferred.
    static constexpr std::size_t kMaxRecipients = 10000;

    // Records an accepted recipient; false (nothing recorded) when the plan is full.
    bool add(PlannedRecipient recipient);
    // Notes one header of the incoming message (only trace headers are counted). Cannot
    // fail: the header stage has no reply (negotiation.hpp).
    void saw_header(std::string_view name) noexcept;

    // True when a recipient of a managed domain was accepted: such a message gets a trace
    // header, and is checked against loop_limit.
    bool managed() const { return !recipients_.empty(); }
    unsigned trace_count() const { return trace_count_; }
    bool exceeds_loop_limit(unsigned loop_limit) const {
        return managed() && trace_count_ >= loop_limit;
    }

    // The edits for end of message, in order: for each rewrite a delete of the recipient as
    // received, then the adds (rewrite and dual). An address is added once even when several
    // recipients lead to it (Ann@ and ann@), and deleted once.
    std::vector<EnvelopeEdit> edits() const;

    const std::vector<PlannedRecipient>& recipients() const { return recipients_; }
    void clear();

private:
    std::vector<PlannedRecipient> recipients_;
    unsigned trace_count_ = 0;
};

}  // namespace coexist::milter
