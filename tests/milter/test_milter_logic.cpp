// The milter's libmilter-free logic: xtext, RCPT parameters, trace headers, the per-message
// plan of envelope edits, replies and log lines, the protocol negotiated with the MTA, the
// worker threads' stack.
#include <catch2/catch.hpp>

#include <pthread.h>

#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "esmtp_params.hpp"
#include "message_plan.hpp"
#include "negotiation.hpp"
#include "replies.hpp"
#include "worker_threads.hpp"
#include "trace_header.hpp"
#include "xtext.hpp"
#include "coexist/system_error.hpp"

using namespace coexist;
using namespace coexist::milter;

TEST_CASE("xtext encodes '+', '=', blanks, controls and 8-bit bytes as +HH") {
    const auto [in, out] = GENERATE(table<std::string, std::string>({
        {"ann@contoso.com", "ann@contoso.com"},
        {"Ann+News@CONTOSO.com", "Ann+2BNews@CONTOSO.com"},
        {"a=b@x", "a+3Db@x"},
        {"\"a b\"@x", "\"a+20b\"@x"},
        {std::string("\x01\x7f\xc3\xa9", 4), "+01+7F+C3+A9"},
        {"", ""},
    }));
    CHECK(xtext_encode(in) == out);
    CHECK(is_xtext(out));
}

TEST_CASE("is_xtext rejects malformed xtext") {
    CHECK_FALSE(is_xtext("a=b"));
    CHECK_FALSE(is_xtext("a+2"));
    CHECK_FALSE(is_xtext("a+"));
    CHECK_FALSE(is_xtext("a+2b"));  // hex must be upper case
    CHECK_FALSE(is_xtext("a b"));
    CHECK(is_xtext("a+2Bb"));
}

TEST_CASE("RCPT parameters: NOTIFY and ORCPT are kept, anything else ignored") {
    SECTION("sender gave both") {
        const auto p = parse_rcpt_params({"notify=SUCCESS,FAILURE", "ORCPT=rfc822;Ann+2Bx@contoso.com"});
        REQUIRE(p.notify);
        CHECK(*p.notify == "SUCCESS,FAILURE");
        REQUIRE(p.orcpt);
        CHECK(*p.orcpt == "rfc822;Ann+2Bx@contoso.com");
        CHECK(added_recipient_params(p, "ann+x@contoso.com") ==
              "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Ann+2Bx@contoso.com");
    }
    SECTION("sender gave none: ORCPT is the original, xtext-encoded, case kept") {
        const auto p = parse_rcpt_params({"SIZE=100", "BODY=8BITMIME"});
        CHECK_FALSE(p.notify);
        CHECK_FALSE(p.orcpt);
        CHECK(added_recipient_params(p, "Ann+News@CONTOSO.com") == "ORCPT=rfc822;Ann+2BNews@CONTOSO.com");
    }
    SECTION("malformed values are dropped, not passed on for Postfix to refuse") {
        const auto p = parse_rcpt_params({"NOTIFY=SOMETIMES", "ORCPT=rfc822", "ORCPT=;x", "NOTIFY="});
        CHECK_FALSE(p.notify);
        CHECK_FALSE(p.orcpt);
        CHECK(added_recipient_params(p, "bob@contoso.com") == "ORCPT=rfc822;bob@contoso.com");
    }
    SECTION("a utf-8 ORCPT (RFC 6533) is decoded and handed to cleanup as the address it stands for") {
        // Postfix 3.7's cleanup xtext-decodes every ORCPT a milter gives: "\x{E9}" passed on as it
        // came was stored as it is, and the next hop got "d\x{5C}x{E9}vy" (helper 68).
        CHECK(*parse_rcpt_params({"ORCPT=utf-8;d\\x{E9}vy@contoso.com"}).orcpt == "utf-8;d\xC3\xA9vy@contoso.com");
        CHECK(*parse_rcpt_params({"ORCPT=UTF-8;d\xC3\xA9vy@contoso.com"}).orcpt == "utf-8;d\xC3\xA9vy@contoso.com");
        CHECK(*parse_rcpt_params({"ORCPT=utf-8;\\x{1F600}@contoso.com"}).orcpt == "utf-8;\xF0\x9F\x98\x80@contoso.com");
        // A '+' (escaped in the value) is "+2B" for cleanup's xtext decoding.
        CHECK(*parse_rcpt_params({"ORCPT=utf-8;d\xC3\xA9vy\\x{2B}news@contoso.com"}).orcpt ==
              "utf-8;d\xC3\xA9vy+2Bnews@contoso.com");
        // All ASCII once decoded: typed rfc822, xtext, as Postfix types such an address.
        CHECK(*parse_rcpt_params({"ORCPT=utf-8;ann\\x{2B}x@contoso.com"}).orcpt == "rfc822;ann+2Bx@contoso.com");
        for (const char* bad : {"ORCPT=utf-8;a+b@c", "ORCPT=utf-8;a=b@c", "ORCPT=utf-8;a\\b@c", "ORCPT=utf-8;a\\x{}@c",
                                "ORCPT=utf-8;a\\x{D800}@c", "ORCPT=utf-8;a\\x{110000}@c", "ORCPT=utf-8;a\\x{1234567}@c",
                                "ORCPT=utf-8;a\\x{E9@c", "ORCPT=utf-8;a\xC3@c", "ORCPT=utf-8;a\xC0\xAF@c",
                                "ORCPT=utf-8;a\\x{0A}@c", "ORCPT=utf-8;"}) {
            CAPTURE(bad);
            CHECK_FALSE(parse_rcpt_params({bad}).orcpt);
        }
        // No ORCPT given, an SMTPUTF8 original: typed utf-8, the address as it is.
        CHECK(added_recipient_params(parse_rcpt_params({}), "d\xC3\xA9vy@contoso.com") ==
              "ORCPT=utf-8;d\xC3\xA9vy@contoso.com");
        CHECK(added_recipient_params(parse_rcpt_params({}), "d\xC3\xA9vy+x@contoso.com") ==
              "ORCPT=utf-8;d\xC3\xA9vy+2Bx@contoso.com");
    }
    SECTION("NOTIFY=NEVER alone") {
        const auto p = parse_rcpt_params({"NOTIFY=never"});
        CHECK(added_recipient_params(p, "b@c") == "NOTIFY=never ORCPT=rfc822;b@c");
    }
}

TEST_CASE("strip_brackets keeps case and strips one pair of <>") {
    CHECK(strip_brackets("<Ann@Contoso.COM>") == "Ann@Contoso.COM");
    CHECK(strip_brackets(" <a@b> ") == "a@b");
    CHECK(strip_brackets("a@b") == "a@b");
    CHECK(strip_brackets("<") == "<");
}

TEST_CASE("trace headers are counted case-insensitively, other headers not") {
    MessagePlan plan;
    plan.saw_header("X-Coexist-Trace");
    plan.saw_header("x-coexist-trace");
    plan.saw_header("X-Coexist-Tracer");
    plan.saw_header("X-Coexist-Tracf");  // same length, one byte off
    plan.saw_header("Received");
    CHECK(plan.trace_count() == 2);
    CHECK_FALSE(plan.exceeds_loop_limit(2));  // nothing managed in it: not our loop
    plan.add({"<ann@contoso.com>", {}, {Action::relay, "", ""}});
    CHECK(plan.exceeds_loop_limit(2));
    CHECK_FALSE(plan.exceeds_loop_limit(3));
    plan.clear();
    CHECK(plan.trace_count() == 0);
    CHECK_FALSE(plan.managed());
}

TEST_CASE("trace header value names host, queue id and time") {
    CHECK(trace_header_value("relay.example", "4AbC", 0) == "relay.example; id=4AbC; Thu, 01 Jan 1970 00:00:00 +0000");
}

TEST_CASE("a queue id that is not letters and digits cannot add a header or a long line") {
    // Found by a hostile test: {i} = "ABC\r\nX-Injected: yes" reached the header value as is.
    CHECK(trace_header_value("h", "ABC\r\nX-Injected: yes", 0) == "h; id=ABC??X?Injected??yes; Thu, 01 Jan 1970 00:00:00 +0000");
    CHECK(header_safe_queue_id("4bMzRq1ZkGz9vWx") == "4bMzRq1ZkGz9vWx");  // a long queue id, kept
    CHECK(header_safe_queue_id(std::string(5000, 'A')) == std::string(kMaxHeaderQueueIdBytes, 'A'));
    CHECK(is_header_safe_queue_id("4bMzRq1ZkGz9vWx"));
    CHECK_FALSE(is_header_safe_queue_id("ABC\r\nX"));
    CHECK_FALSE(is_header_safe_queue_id("ABC: to=<a@b>"));
    CHECK_FALSE(is_header_safe_queue_id(std::string(kMaxHeaderQueueIdBytes + 1, 'A')));
}

TEST_CASE("trace header date reads as strftime writes it in the C locale") {
    // The value is formatted by hand (no locale lookups per message); strftime is the reference.
    // Every 61 hours and 7 seconds from 1970 to 2100, 29 February 2000, and the edges of the
    // years 9999 and 10000.
    std::vector<std::time_t> times;
    for (std::time_t t = 0; t < 4102444800; t += 61 * 3600 + 7) times.push_back(t);
    for (std::time_t t : {std::time_t{951782400}, std::time_t{253402300799}, std::time_t{253402300800}})
        times.push_back(t);
    for (const std::time_t t : times) {
        std::tm tm{};
        REQUIRE(::gmtime_r(&t, &tm) != nullptr);
        char date[64];
        const std::size_t n = std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
        INFO("time " << t);
        REQUIRE(trace_header_value("h", "q", t) == "h; id=q; " + std::string(date, n));
    }
}

TEST_CASE("the plan: rewrite deletes as received and adds, dual only adds, relay nothing") {
    MessagePlan plan;
    plan.add({"<Ann+News@CONTOSO.com>", {}, {Action::rewrite, "ann+News@o365.contoso.com", ""}});
    plan.add({"<bob@contoso.com>", {}, {Action::relay, "", ""}});
    plan.add({"<dave@contoso.com>", parse_rcpt_params({"NOTIFY=NEVER"}), {Action::dual, "dave@o365.contoso.com", ""}});
    using K = EnvelopeEdit::Kind;
    const std::vector<EnvelopeEdit> expected{
        {K::delete_recipient, "<Ann+News@CONTOSO.com>", ""},
        {K::add_recipient, "<ann+News@o365.contoso.com>", "ORCPT=rfc822;Ann+2BNews@CONTOSO.com"},
        {K::add_recipient, "<dave@o365.contoso.com>", "NOTIFY=NEVER ORCPT=rfc822;dave@contoso.com"},
    };
    CHECK(plan.edits() == expected);
    CHECK(plan.managed());
}

TEST_CASE("the plan adds one copy when two recipients lead to the same routing address") {
    MessagePlan plan;
    plan.add({"<ann@contoso.com>", {}, {Action::rewrite, "ann@o365.contoso.com", ""}});
    plan.add({"<Ann@contoso.com>", {}, {Action::rewrite, "ann@o365.contoso.com", ""}});
    plan.add({"<ann@contoso.com>", {}, {Action::rewrite, "ann@o365.contoso.com", ""}});
    const auto edits = plan.edits();
    REQUIRE(edits.size() == 3);  // two distinct deletes, one add
    CHECK(edits[0].address == "<ann@contoso.com>");
    CHECK(edits[1].address == "<Ann@contoso.com>");
    CHECK(edits[2].kind == EnvelopeEdit::Kind::add_recipient);
}

TEST_CASE("the plan is bounded") {
    MessagePlan plan;
    for (std::size_t i = 0; i < MessagePlan::kMaxRecipients; ++i)
        REQUIRE(plan.add({"<a@contoso.com>", {}, {Action::relay, "", ""}}));
    CHECK_FALSE(plan.add({"<b@contoso.com>", {}, {Action::relay, "", ""}}));
}

TEST_CASE("replies: codes, and text made safe for libmilter") {
    const auto r = unknown_recipient_reply("<x%y@fabrikam.com>", "unknown user");
    CHECK(std::string(r.code) == "550");
    CHECK(std::string(r.extended) == "5.1.1");
    CHECK(r.text == "<x%%y@fabrikam.com>: Recipient address rejected: unknown user");
    const auto t = lookup_failure_reply("a\r\nb@contoso.com");
    CHECK(std::string(t.code) == "451");
    CHECK(std::string(t.extended) == "4.3.0");
    CHECK(t.text.find('\r') == std::string::npos);
    CHECK(t.text.find('\n') == std::string::npos);
    const auto l = loop_reply(3, 3);
    CHECK(std::string(l.code) == "554");
    CHECK(std::string(l.extended) == "5.4.6");
    CHECK(reply_safe(std::string(5000, 'a')).size() < kMaxReplyText);
}

TEST_CASE("one decision log line in QUEUEID: key=value style") {
    CHECK(decision_log_line("4AbC", "<Ann@contoso.com>", {Action::rewrite, "ann@o365.contoso.com", "alias of a@b"}) ==
          "4AbC: to=<Ann@contoso.com>, action=rewrite, new=<ann@o365.contoso.com>, detail=\"alias of a@b\"");
    CHECK(decision_log_line("NOQUEUE", "bob@contoso.com", {Action::relay, "", ""}) ==
          "NOQUEUE: to=<bob@contoso.com>, action=relay");
}

TEST_CASE("a decision log line cannot be given forged fields by the address") {
    // The address is the sender's: a quoted local part may hold '>' and ", action=...". The line's
    // first action= and new= must be coexist's.
    const std::string rcpt = "<\"x>, action=rewrite, new=<evil@o365.contoso.com> x\"@contoso.com>";
    const std::string line = decision_log_line("4AbC", rcpt, {Action::reject, "", "unknown \"user\""});
    CHECK(line == "4AbC: to=<\"x?, action=rewrite, new=?evil@o365.contoso.com? x\"@contoso.com>, action=reject, "
                  "detail=\"unknown \\\"user\\\"\"");
    CHECK(line.find(">, ") == line.find(">, action=reject"));
    CHECK(logged_recipient("<ann@contoso.com>") == "to=<ann@contoso.com>");
}

namespace {

// What Postfix 3.7 offers with milter_protocol = 6 (milter8.c: my_actions, MILTER8_V6_PROTO_MASK),
// and the SMFIP_NO* libmilter fills in for coexist's NULL callbacks.
constexpr unsigned long kPostfixActions = SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_ADDRCPT | SMFIF_DELRCPT |
                                          SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_CHGFROM |
                                          SMFIF_ADDRCPT_PAR | SMFIF_SETSYMLIST;
constexpr unsigned long kV4Steps = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY |
                                   SMFIP_NOHDRS | SMFIP_NOEOH | SMFIP_NOUNKNOWN | SMFIP_NODATA;
constexpr unsigned long kNoReplyAll = SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT |
                                      SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_HDR | SMFIP_NR_EOH |
                                      SMFIP_NR_BODY;
constexpr unsigned long kPostfixSteps = kV4Steps | SMFIP_SKIP | SMFIP_RCPT_REJ | kNoReplyAll | SMFIP_HDR_LEADSPC;
constexpr unsigned long kLibmilterSteps = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOEOH | SMFIP_NOBODY |
                                          SMFIP_NOUNKNOWN | SMFIP_SKIP;

}  // namespace

TEST_CASE("negotiation: no reply for MAIL and headers, RCPT and end of message keep theirs") {
    const ProtocolChoice inet = choose_protocol(kPostfixActions, kPostfixSteps, kLibmilterSteps, true);
    CHECK(inet.actions == (kRequiredActions | SMFIF_SETSYMLIST));
    CHECK(inet.macro_lists);
    CHECK(inet.steps == (kLibmilterSteps | SMFIP_NR_MAIL | SMFIP_NR_HDR));
    CHECK(inet.no_reply() == (SMFIP_NR_MAIL | SMFIP_NR_HDR));
    // Over a unix socket DATA goes without a reply too (no Nagle to wait behind).
    const ProtocolChoice unix_socket = choose_protocol(kPostfixActions, kPostfixSteps, kLibmilterSteps, false);
    CHECK(unix_socket.no_reply() == (SMFIP_NR_MAIL | SMFIP_NR_HDR | SMFIP_NR_DATA));
    for (const ProtocolChoice& c : {inet, unix_socket}) {
        CHECK((c.steps & SMFIP_NR_RCPT) == 0);  // a recipient can be refused
        CHECK((c.steps & (SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOHDRS | SMFIP_NODATA)) == 0);
        CHECK((c.actions & (SMFIF_CHGBODY | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_CHGFROM | SMFIF_ADDRCPT)) == 0);
    }
}

TEST_CASE("negotiation: an MTA that offers less gets the protocol of before") {
    SECTION("no no-reply stages (milter_protocol = 4 or older, and a libmilter that fakes none)") {
        const ProtocolChoice c = choose_protocol(kPostfixActions, kV4Steps, kLibmilterSteps, false);
        CHECK(c.steps == kLibmilterSteps);
        CHECK(c.no_reply() == 0);
    }
    SECTION("only some of them") {
        const ProtocolChoice c = choose_protocol(kPostfixActions, kV4Steps | SMFIP_NR_HDR, kLibmilterSteps, false);
        CHECK(c.no_reply() == SMFIP_NR_HDR);
    }
    SECTION("no macro lists") {
        const ProtocolChoice c =
            choose_protocol(kPostfixActions & ~SMFIF_SETSYMLIST, kPostfixSteps, kLibmilterSteps, true);
        CHECK(c.actions == kRequiredActions);
        CHECK_FALSE(c.macro_lists);
        CHECK(c.no_reply() == (SMFIP_NR_MAIL | SMFIP_NR_HDR));
    }
    SECTION("not the actions coexist needs: asked for all the same, so libmilter ends the connection") {
        const ProtocolChoice c = choose_protocol(SMFIF_ADDHDRS | SMFIF_ADDRCPT, kPostfixSteps, kLibmilterSteps, false);
        CHECK(c.actions == kRequiredActions);
        CHECK(c.steps == kLibmilterSteps);
        CHECK_FALSE(c.macro_lists);
    }
}

TEST_CASE("set_default_thread_stack: threads started afterwards get that stack; below PTHREAD_STACK_MIN is refused") {
    // Process-wide state: put the default back for the test cases that follow.
    pthread_attr_t before;
    REQUIRE(pthread_getattr_default_np(&before) == 0);
    std::size_t before_bytes = 0;
    REQUIRE(pthread_attr_getstacksize(&before, &before_bytes) == 0);
    pthread_attr_destroy(&before);
    struct RestoreAtExit {
        std::size_t bytes;
        ~RestoreAtExit() {
            try {
                set_default_thread_stack(bytes);
            } catch (...) {
            }
        }
    } restore{before_bytes};

    const auto stack_of_a_new_thread = [] {
        std::size_t bytes = 0;
        std::thread([&bytes] {
            pthread_attr_t attr;
            if (pthread_getattr_np(pthread_self(), &attr) != 0) return;
            pthread_attr_getstacksize(&attr, &bytes);
            pthread_attr_destroy(&attr);
        }).join();
        return bytes;
    };
    set_default_thread_stack(kWorkerThreadStackBytes);
    CHECK(stack_of_a_new_thread() == kWorkerThreadStackBytes);
    set_default_thread_stack(2 * kWorkerThreadStackBytes);
    CHECK(stack_of_a_new_thread() == 2 * kWorkerThreadStackBytes);
    CHECK_THROWS_AS(set_default_thread_stack(1024), SystemError);
    CHECK(stack_of_a_new_thread() == 2 * kWorkerThreadStackBytes);  // unchanged by the refusal
}
