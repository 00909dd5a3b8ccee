// A fake of the few libmilter calls the filter's callbacks make (smfi_getpriv/setpriv,
// smfi_getsymval, smfi_setreply, smfi_addrcpt_par, smfi_delrcpt, smfi_addheader,
// smfi_setsymlist), linked into the unit tests instead of libmilter. A test builds one smfi_str
// per SMTP session, calls the callbacks from filter_description() directly, and then reads what
// the filter asked for.
#pragma once

#include <libmilter/mfapi.h>

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

// libmilter keeps SMFICTX opaque; the stub gives it a body of its own.
struct smfi_str {
    struct Reply {
        std::string code, extended, text;
    };

    void* priv = nullptr;
    std::map<std::string, std::string> macros;  // "i" -> queue id, ...
    std::optional<Reply> reply;                 // the last smfi_setreply
    std::vector<std::string> deleted;           // smfi_delrcpt, in call order
    std::vector<std::pair<std::string, std::string>> added;    // smfi_addrcpt_par: address, params
    std::vector<std::pair<std::string, std::string>> headers;  // smfi_addheader: name, value
    std::map<int, std::string> symlists;        // smfi_setsymlist: SMFIM_* -> macro names

    // Make the next calls of that function fail with MI_FAILURE, as libmilter does when the
    // MTA connection broke or the action was not negotiated.
    bool fail_setpriv = false;
    bool fail_addrcpt = false;
    bool fail_delrcpt = false;
    bool fail_addheader = false;
};
