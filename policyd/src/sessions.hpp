// One protocol conversation per client connection, with no sockets in it: the event loop hands
// a session whatever bytes arrived and sends back whatever replies it produced. Unit tests drive
// the same classes with requests split at any read size.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "coexist/route.hpp"
#include "netstring.hpp"
#include "policy_request.hpp"

namespace coexist::policyd {

// What a session needs from the daemon: the one routing decision, somewhere to log it, and
// (optional) where to count it.
struct SessionServices {
    // route() of a parsed recipient (route.hpp): the sessions parse what they receive once, and
    // answer for what is no address themselves.
    std::function<RoutingDecision(const Address& recipient)> route;
    std::function<void(const std::string& line)> log;  // one line per logged decision
    // [routing] shadow (design 13.6): decide, log and count, answer what changes nothing.
    bool shadow = false;
    // Each decision, by service ("policy", "virtual", "recipients"); may be empty.
    std::function<void(std::string_view service, Action action)> count = {};
    // A session of `protocol` ("policy", "socketmap") began (+1) or ended (-1); may be empty.
    std::function<void(std::string_view protocol, int delta)> connections = {};
    // [routing] log_lookups: log every decided lookup, not only those that change the mail's
    // route or refuse or defer it (policy_changes_mail(), socketmap_changes_mail()).
    bool log_lookups = false;
    // route() of a policy request's recipient that parse_address() cannot read: an unknown user
    // of the managed domain it names, as the milter decides (route.hpp). Empty: foreign.
    std::function<RoutingDecision(std::string_view recipient)> route_unreadable = {};
};

// Reports a session's life to SessionServices::connections: +1 when made, -1 when destroyed,
// so the open-connections gauge cannot drift whichever way a connection ends.
class ConnectionTally {
public:
    ConnectionTally(const SessionServices& services, std::string_view protocol);
    ~ConnectionTally();
    ConnectionTally(const ConnectionTally&) = delete;
    ConnectionTally& operator=(const ConnectionTally&) = delete;

private:
    const SessionServices& services_;
    std::string_view protocol_;  // a literal
};

struct SessionLimits {
    std::size_t max_request_bytes;  // policy: one attribute line; socketmap: one netstring payload
    unsigned max_attributes;        // policy: attributes in one request
};

class Session {
public:
    virtual ~Session() = default;
    // Consumes all of `input`, appending the replies of every request it completes to `replies`.
    // Returns false when the connection must be closed (after `replies` is sent): the client
    // broke the protocol and error() says how.
    virtual bool consume(std::string_view input, std::string& replies) = 0;
    // Part of a request has arrived and the rest has not.
    virtual bool mid_request() const = 0;
    virtual std::string_view error() const = 0;
};

// check_policy_service: DUNNO except at RCPT, where reject and tempfail are answered.
class PolicySession final : public Session {
public:
    PolicySession(const SessionServices& services, const SessionLimits& limits)
        : services_(services), tally_(services, "policy"), parser_(limits.max_request_bytes, limits.max_attributes) {}
    bool consume(std::string_view input, std::string& replies) override;
    bool mid_request() const override { return parser_.started(); }
    std::string_view error() const override { return parser_.error(); }

private:
    // Appends the reply to `request` to `replies`.
    void answer(const PolicyRequest& request, std::string& replies);

    const SessionServices& services_;
    ConnectionTally tally_;
    PolicyRequestParser parser_;
};

// socketmap: one netstring "table key" in, one netstring reply out.
class SocketmapSession final : public Session {
public:
    SocketmapSession(const SessionServices& services, const SessionLimits& limits)
        : services_(services), tally_(services, "socketmap"), decoder_(limits.max_request_bytes) {}
    bool consume(std::string_view input, std::string& replies) override;
    bool mid_request() const override { return decoder_.started(); }
    std::string_view error() const override { return error_; }

private:
    // The reply payload for one request payload, into reply_.
    void answer(std::string_view payload);

    const SessionServices& services_;
    ConnectionTally tally_;
    NetstringDecoder decoder_;
    std::string_view error_;
    std::string reply_;  // reused from request to request: no allocation once it has grown
};

}  // namespace coexist::policyd
