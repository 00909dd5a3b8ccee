#include "negotiation.hpp"

namespace coexist::milter {

ProtocolChoice choose_protocol(unsigned long offered_actions, unsigned long offered_steps,
                               unsigned long libmilter_steps, bool reply_to_data) {
    ProtocolChoice c;
    c.actions = kRequiredActions;
    c.steps = libmilter_steps;
    if ((offered_actions & kRequiredActions) != kRequiredActions) return c;  // libmilter refuses, as before
    if (offered_actions & SMFIF_SETSYMLIST) {
        c.actions |= SMFIF_SETSYMLIST;
        c.macro_lists = true;
    }
    unsigned long wanted = kNoReplyStages;
    if (reply_to_data) wanted &= ~static_cast<unsigned long>(SMFIP_NR_DATA);
    c.steps |= wanted & offered_steps;
    return c;
}

}  // namespace coexist::milter
