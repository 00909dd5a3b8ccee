#include "libmilter_stub.hpp"

extern "C" {

void* smfi_getpriv(SMFICTX* ctx) { return ctx->priv; }

int smfi_setpriv(SMFICTX* ctx, void* priv) {
    if (ctx->fail_setpriv) return MI_FAILURE;
    ctx->priv = priv;
    return MI_SUCCESS;
}

char* smfi_getsymval(SMFICTX* ctx, char* name) {
    // libmilter accepts "i" and "{i}" alike.
    std::string key(name);
    if (key.size() > 2 && key.front() == '{' && key.back() == '}') key = key.substr(1, key.size() - 2);
    const auto it = ctx->macros.find(key);
    return it == ctx->macros.end() ? nullptr : it->second.data();
}

int smfi_setreply(SMFICTX* ctx, char* rcode, char* xcode, char* message) {
    ctx->reply = smfi_str::Reply{rcode ? rcode : "", xcode ? xcode : "", message ? message : ""};
    return MI_SUCCESS;
}

int smfi_addrcpt_par(SMFICTX* ctx, char* rcpt, char* args) {
    if (ctx->fail_addrcpt) return MI_FAILURE;
    ctx->added.emplace_back(rcpt, args ? args : "");
    return MI_SUCCESS;
}

int smfi_delrcpt(SMFICTX* ctx, char* rcpt) {
    if (ctx->fail_delrcpt) return MI_FAILURE;
    ctx->deleted.emplace_back(rcpt);
    return MI_SUCCESS;
}

int smfi_addheader(SMFICTX* ctx, char* name, char* value) {
    if (ctx->fail_addheader) return MI_FAILURE;
    ctx->headers.emplace_back(name, value);
    return MI_SUCCESS;
}

int smfi_setsymlist(SMFICTX* ctx, int where, char* macros) {
    // libmilter: once per stage, SMFIM_CONNECT..SMFIM_EOH.
    if (where < SMFIM_FIRST || where > SMFIM_LAST || macros == nullptr) return MI_FAILURE;
    if (!ctx->symlists.emplace(where, macros).second) return MI_FAILURE;
    return MI_SUCCESS;
}

}  // extern "C"
