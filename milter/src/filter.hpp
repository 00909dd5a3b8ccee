// The libmilter filter: callbacks that take the decision from route() at RCPT and apply it at
// end of message. Everything that can be decided without libmilter lives in MessagePlan and
// replies.hpp; these callbacks only move data between libmilter and them.
#pragma once

#include <libmilter/mfapi.h>

#include <string>

#include "coexist/config.hpp"
#include "coexist/map_reader.hpp"
#include "coexist/metrics.hpp"

namespace coexist::milter {

// What every callback needs; shared read-only by all worker threads (MapReader is
// thread-safe). Must outlive smfi_main().
struct FilterEnvironment {
    const Config* config = nullptr;
    MapReader* map = nullptr;
    std::string hostname;  // for the trace header
    // Where lookups and decisions are counted (coexist-milter(8), METRICS); null: not counted.
    Metrics* metrics = nullptr;
    ServiceMetrics* decisions = nullptr;  // metrics->service("milter")
};

// Makes `environment` the one the callbacks use. Call once, before smfi_main().
void install_environment(const FilterEnvironment* environment);

// The filter for smfi_register: only the actions we use (add header, delete recipient, add
// recipient with parameters), and only the callbacks we need, so libmilter asks Postfix to
// skip the others (SMFIP_NOCONNECT, NOHELO, NOEOH, NOBODY, ...).
smfiDesc filter_description();

}  // namespace coexist::milter
