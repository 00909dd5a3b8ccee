// What coexist-milter asks of the MTA at the start of each connection (xxfi_negotiate): the
// actions it uses, the stages it answers, and the macros it reads. No libmilter calls in here
// (only its constants), so the choice is unit-tested directly.
#pragma once

#include <libmilter/mfapi.h>

#include <array>

namespace coexist::milter {

// The actions end of message uses: the trace header, deleting a rewritten recipient, adding
// the routing address with NOTIFY/ORCPT.
inline constexpr unsigned long kRequiredActions = SMFIF_ADDHDRS | SMFIF_DELRCPT | SMFIF_ADDRCPT_PAR;

// The stages whose answer can be "continue" (MAIL only resets the message, headers are only
// counted, DATA at most lets go of a message with no managed recipient, which only saves
// work): with these flags Postfix sends them without waiting for a reply (milter8.c,
// skip_reply), so a message costs one round trip per recipient, one at end of message and,
// over TCP, one for DATA (filter.cpp, on_data).
// RCPT (reject, tempfail) and end of message (the edits) keep their replies.
inline constexpr unsigned long kNoReplyStages = SMFIP_NR_MAIL | SMFIP_NR_HDR | SMFIP_NR_DATA;

// The macros the milter reads (smfi_getsymval): the queue id `i`, for log lines and the trace
// header, requested for every stage, because Postfix replaces an empty list by its own
// milter_*_macros (milter.c, MILTER_MACRO_EVAL); where it has no queue id yet (connect, HELO,
// usually MAIL and the first RCPT) it then sends no macro at all. At RCPT also {rcpt_addr},
// Postfix's own reading of the recipient (filter.cpp, decide_recipient).
inline constexpr const char* kMacroList = "i";
inline constexpr const char* kRcptMacroList = "i {rcpt_addr}";
inline constexpr std::array<int, 7> kMacroStages = {SMFIM_CONNECT, SMFIM_HELO, SMFIM_ENVFROM, SMFIM_ENVRCPT,
                                                    SMFIM_DATA,    SMFIM_EOM,  SMFIM_EOH};
inline constexpr const char* macro_list(int stage) { return stage == SMFIM_ENVRCPT ? kRcptMacroList : kMacroList; }

struct ProtocolChoice {
    unsigned long actions = 0;  // *pf0 of xxfi_negotiate
    unsigned long steps = 0;    // *pf1: the SMFIP_NO* libmilter chose, plus the no-reply stages
    bool macro_lists = false;   // call smfi_setsymlist for kMacroStages
    // The no-reply stages granted; every callback of such a stage must return SMFIS_NOREPLY.
    unsigned long no_reply() const { return steps & kNoReplyStages; }
};

// offered_actions, offered_steps: f0 and f1 of xxfi_negotiate (what the MTA offers; libmilter
// adds the SMFIP_NR_* it can fake by answering "continue" itself when the MTA lacks them).
// libmilter_steps: *pf1 as libmilter filled it in, the SMFIP_NO* for the callbacks that are
// NULL. reply_to_data: keep the DATA reply (inet sockets: see filter.cpp, on_data).
// An MTA that does not offer the required actions gets them asked for all the same, so that
// libmilter ends the connection as it did before negotiation (never a filter that cannot
// apply its decisions); an MTA without SMFIF_SETSYMLIST gets no macro lists.
ProtocolChoice choose_protocol(unsigned long offered_actions, unsigned long offered_steps,
                               unsigned long libmilter_steps, bool reply_to_data);

}  // namespace coexist::milter
