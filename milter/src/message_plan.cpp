#include "message_plan.hpp"

#include <fmt/format.h>
#include <set>

#include "coexist/address.hpp"
#include "esmtp_params.hpp"
#include "trace_header.hpp"

namespace coexist::milter {

bool MessagePlan::add(PlannedRecipient recipient) {
    if (recipients_.size() >= kMaxRecipients) return false;
    recipients_.push_back(std::move(recipient));
    return true;
}

void MessagePlan::saw_header(std::string_view name) noexcept {
    if (is_trace_header(name) && trace_count_ < 1000000) ++trace_count_;
}

namespace {

// The recipient to give smfi_delrcpt: argv[0] exactly as received, brackets, quotes and case
// included, except a source route. cleanup matches the request by strcmp() against the
// recipient as smtpd stored it, in internal form with the route already dropped
// (cleanup_milter.c, cleanup_del_rcpt()), after parsing the request with tok822_parse(), which
// reads the comma of a two-hop route "<@a,@b:u@d>" as a list of two addresses and so deletes
// nothing ("Milter request to drop multi-recipient"): the mail would go to both systems.
std::string recipient_for_delete(std::string_view as_received) {
    const std::string_view inner = strip_brackets(as_received);
    if (inner.empty() || inner.front() != '@') return std::string(as_received);
    const auto colon = inner.find(':');
    if (colon == std::string_view::npos) return std::string(as_received);
    // fmt, not `"<" + std::string`: GCC 12 -O3 gives a false -Wrestrict for that form.
    return fmt::format("<{}>", inner.substr(colon + 1));
}

}  // namespace

std::vector<EnvelopeEdit> MessagePlan::edits() const {
    std::vector<EnvelopeEdit> deletes, adds;
    std::set<std::string> deleted, added;
    for (const auto& r : recipients_) {
        const Action action = r.decision.action;
        if (action != Action::rewrite && action != Action::dual) continue;
        if (action == Action::rewrite) {
            std::string to_delete = recipient_for_delete(r.as_received);
            if (deleted.insert(to_delete).second)
                deletes.push_back({EnvelopeEdit::Kind::delete_recipient, std::move(to_delete), {}});
        }
        if (added.insert(lowercase_ascii(r.decision.address)).second)
            adds.push_back({EnvelopeEdit::Kind::add_recipient, "<" + r.decision.address + ">",
                            added_recipient_params(r.params, strip_brackets(r.as_received))});
    }
    deletes.insert(deletes.end(), adds.begin(), adds.end());
    return deletes;
}

void MessagePlan::clear() {
    recipients_.clear();
    trace_count_ = 0;
}

}  // namespace coexist::milter
