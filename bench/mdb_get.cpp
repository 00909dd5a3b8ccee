// The floor under every coexist lookup (issue 13): raw mdb_get of the benchmark's users in the
// `users` database of a coexist map (maps/src/schema.hpp), one read transaction reset and
// renewed per lookup, as a daemon that opens a fresh snapshot per decision pays at the least.
// No address parsing, no decoding of the record, no route(): what is left is LMDB itself.
//
//   bench_mdb_get MAPDIR N [--users U]
//
// Looks up N keys userK@contoso.com, K striding through 0..U-1 (U defaults to N) like
// bench_load_client does, and prints one JSON line: lookups, seconds, ops_per_second.
// Every key must be found (the map holds users 0..U-1): exit 1 otherwise, 2 on usage.

#include <lmdb.h>
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

// RAII for the two LMDB handles the program holds.
struct Env {
    MDB_env* env = nullptr;
    ~Env() {
        if (env) mdb_env_close(env);
    }
};
struct Txn {
    MDB_txn* txn = nullptr;
    ~Txn() {
        if (txn) mdb_txn_abort(txn);
    }
};

[[noreturn]] void die(const char* what, int rc) {
    std::fprintf(stderr, "bench_mdb_get: %s: %s\n", what, mdb_strerror(rc));
    std::exit(1);
}

std::uint64_t now_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3 && !(argc == 5 && std::strcmp(argv[3], "--users") == 0)) {
        std::fprintf(stderr, "usage: bench_mdb_get MAPDIR N [--users U]\n");
        return 2;
    }
    const std::uint64_t n = std::strtoull(argv[2], nullptr, 10);
    const std::uint64_t users = argc == 5 ? std::strtoull(argv[4], nullptr, 10) : n;
    if (n == 0 || users == 0) {
        std::fprintf(stderr, "bench_mdb_get: N and U must be positive\n");
        return 2;
    }
    Env env;
    int rc = mdb_env_create(&env.env);
    if (rc) die("mdb_env_create", rc);
    if ((rc = mdb_env_set_maxdbs(env.env, 16))) die("mdb_env_set_maxdbs", rc);
    // Read-only and NOTLS, as coexist's readers open the map.
    if ((rc = mdb_env_open(env.env, argv[1], MDB_RDONLY | MDB_NOTLS, 0640))) die(argv[1], rc);
    Txn txn;
    if ((rc = mdb_txn_begin(env.env, nullptr, MDB_RDONLY, &txn.txn))) die("mdb_txn_begin", rc);
    MDB_dbi users_db{};
    if ((rc = mdb_dbi_open(txn.txn, "users", 0, &users_db))) die("mdb_dbi_open users", rc);
    // A handle opened in a transaction is that transaction's until it commits: a reset would
    // discard it.
    rc = mdb_txn_commit(txn.txn);
    txn.txn = nullptr;
    if (rc) die("mdb_txn_commit", rc);
    if ((rc = mdb_txn_begin(env.env, nullptr, MDB_RDONLY, &txn.txn))) die("mdb_txn_begin", rc);

    char key[64];
    std::uint64_t value_bytes = 0;  // used, so the reads cannot be optimised away
    const std::uint64_t start = now_ns();
    for (std::uint64_t i = 0; i < n; ++i) {
        const std::uint64_t user = (i * 7919u + i / users) % users;  // bench_load_client's stride
        const int len = std::snprintf(key, sizeof key, "user%llu@contoso.com", static_cast<unsigned long long>(user));
        mdb_txn_reset(txn.txn);
        if ((rc = mdb_txn_renew(txn.txn))) die("mdb_txn_renew", rc);
        MDB_val k{static_cast<std::size_t>(len), key}, v{};
        if ((rc = mdb_get(txn.txn, users_db, &k, &v))) {
            std::fprintf(stderr, "bench_mdb_get: %s: %s\n", key, mdb_strerror(rc));
            return 1;
        }
        value_bytes += v.mv_size;
    }
    const double seconds = static_cast<double>(now_ns() - start) / 1e9;
    std::printf("{\"lookups\": %llu, \"seconds\": %.4f, \"ops_per_second\": %.1f, \"value_bytes\": %llu}\n",
                static_cast<unsigned long long>(n), seconds, static_cast<double>(n) / seconds,
                static_cast<unsigned long long>(value_bytes));
    return 0;
}
