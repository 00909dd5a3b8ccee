// bench_route: N route() decisions per thread against an existing map, the cost of the lookup
// path alone (no socket, no log line).
// Usage: bench_route CONFIG N THREADS USERS [DISTINCT [EVICT_MIB]]
// The map is expected to hold user0..user{USERS-1}@contoso.com (bench/import-1m.sh's CSV);
// the addresses asked cycle through DISTINCT of them (65536 by default: the decisions touch the
// whole map as a relay's do; a few hundred keep the map's pages in the CPU's caches and leave
// the per-decision overhead), a tenth of them unknown, a tenth with a +extension (two finds).
// Prints ns per decision, wall and CPU (the steadier figure on a shared machine), averaged over
// the threads, and checks every answer (a wrong one fails).
// EVICT_MIB > 0: before each decision the thread writes that many MiB of a buffer of its own, so
// the decision starts with cold CPU caches and TLB, as in a daemon whose thread wakes after
// Postfix's processes ran; only the decisions are timed (wall and CPU are then the same figure).
#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "coexist/config.hpp"
#include "coexist/map_reader.hpp"
#include "coexist/route.hpp"

using namespace coexist;

int main(int argc, char** argv) {
    if (argc < 5 || argc > 7) {
        fmt::print(stderr, "usage: bench_route CONFIG N THREADS USERS [DISTINCT [EVICT_MIB]]\n");
        return 2;
    }
    const Config config = load_config(argv[1]);
    const long n = std::atol(argv[2]);
    const int threads = std::atoi(argv[3]);
    const long users = std::atol(argv[4]);
    // The addresses are built before the clock starts: their formatting is not route()'s cost.
    const long distinct = argc >= 6 ? std::atol(argv[5]) : 65536;
    const std::size_t evict_bytes = argc == 7 ? static_cast<std::size_t>(std::atol(argv[6])) << 20 : 0;
    std::vector<std::string> addresses;
    addresses.reserve(static_cast<std::size_t>(distinct));
    for (long i = 0; i < distinct; ++i) {
        const long u = (i * 7919) % users;  // a prime stride: spread over the whole map
        if (i % 10 == 0) addresses.push_back(fmt::format("nobody{}@contoso.com", i));
        else if (i % 10 == 1) addresses.push_back(fmt::format("user{}+tag@contoso.com", u));
        else addresses.push_back(fmt::format("user{}@contoso.com", u));
    }
    MapReader map(config.map_path);
    if (route(config, map, addresses[2]).action == Action::tempfail) {
        fmt::print(stderr, "map unavailable: {}\n", route(config, map, addresses[2]).detail);
        return 1;
    }
    std::atomic<long> wrong{0};
    std::atomic<bool> go{false};
    std::vector<double> ns_per(threads), cpu_ns_per(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            while (!go.load()) std::this_thread::yield();
            long bad = 0;
            const auto decide = [&](long i) {
                const std::string& a = addresses[static_cast<std::size_t>((i + t * 4099) % distinct)];
                const RoutingDecision d = route(config, map, a);
                if (d.action == Action::tempfail || d.action == Action::foreign) ++bad;
            };
            if (evict_bytes > 0) {
                std::vector<unsigned char> junk(evict_bytes);
                std::chrono::steady_clock::duration decisions{};
                for (long i = 0; i < n; ++i) {
                    std::fill(junk.begin(), junk.end(), static_cast<unsigned char>(i));
                    const auto start = std::chrono::steady_clock::now();
                    decide(i);
                    decisions += std::chrono::steady_clock::now() - start;
                }
                const double ns = std::chrono::duration<double, std::nano>(decisions).count();
                ns_per[static_cast<std::size_t>(t)] = cpu_ns_per[static_cast<std::size_t>(t)] = ns / static_cast<double>(n);
                wrong += bad;
                return;
            }
            timespec cpu0{}, cpu1{};
            ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
            const auto start = std::chrono::steady_clock::now();
            for (long i = 0; i < n; ++i) decide(i);
            const auto ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start);
            ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
            const double cpu = static_cast<double>(cpu1.tv_sec - cpu0.tv_sec) * 1e9 + static_cast<double>(cpu1.tv_nsec - cpu0.tv_nsec);
            ns_per[static_cast<std::size_t>(t)] = ns.count() / static_cast<double>(n);
            cpu_ns_per[static_cast<std::size_t>(t)] = cpu / static_cast<double>(n);
            wrong += bad;
        });
    go = true;
    for (auto& th : pool) th.join();
    double sum = 0, cpu_sum = 0;
    for (double v : ns_per) sum += v;
    for (double v : cpu_ns_per) cpu_sum += v;
    if (evict_bytes > 0) fmt::print("caches evicted ({} MiB written) before each decision; ", evict_bytes >> 20);
    fmt::print("threads={} decisions/thread={} wall_ns/decision={:.0f} cpu_ns/decision={:.0f} decisions/s={:.0f} wrong={}\n",
               threads, n, sum / threads, cpu_sum / threads, threads * 1e9 / (sum / threads), wrong.load());
    return wrong ? 1 : 0;
}
