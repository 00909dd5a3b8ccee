#include "message_plan.hpp"

#include <set>

#include "coexist/address.hpp"
#include "trace_header.hpp"

namespace coexist::milter {

bool MessagePlan::add(PlannedRecipient recipient) {
    if (recipients_.size() >= kMaxRecipients) return false;
    recipients_.push_back(std::move(recipient));
    return true;
}

void MessagePlan::saw_header(std::string_view name) {
    if (is_trace_header(name) && trace_count_ < 1000000) ++trace_count_;
}

std::vector<EnvelopeEdit> MessagePlan::edits() const {
    std::vector<EnvelopeEdit> deletes, adds;
    std::set<std::string> deleted, added;
    for (const auto& r : recipients_) {
        const Action action = r.decision.action;
        if (action != Action::rewrite && action != Action::dual) continue;
        if (action == Action::rewrite && deleted.insert(r.as_received).second)
            deletes.push_back({EnvelopeEdit::Kind::delete_recipient, r.as_received, {}});
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
