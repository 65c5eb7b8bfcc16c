// kvpeers: the same key-value workloads as granary-treebench, on the stores a user would
// otherwise pick, for tools/bench-tree to run in the same session:
//
//   kvpeers lmdb|sqlite|rocksdb DIR insert SECONDS VALUE_BYTES   durable random inserts, one thread
//   kvpeers lmdb|sqlite|rocksdb DIR load KEYS VALUE_BYTES         bulk load, synced once at the end
//   kvpeers lmdb|sqlite|rocksdb DIR read KEYS SECONDS             random point reads, one thread
//
// Keys are 16 bytes ("key" and 13 digits). Durable means each insert is its own commit,
// on stable storage when the call returns: LMDB's default sync commit, SQLite in WAL mode
// with synchronous=FULL, RocksDB with WriteOptions.sync. Prints one JSON line.
#include <lmdb.h>
#include <rocksdb/c.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t next_random(void) {
    rng_state += 0x9E3779B97F4A7C15ull;
    uint64_t z = rng_state;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void make_key(char *key, uint64_t index) { snprintf(key, 17, "key%013llu", (unsigned long long)(index % 10000000000000ull)); }

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what) { fprintf(stderr, "kvpeers: %s\n", what); exit(1); }

// One engine behind three calls.
typedef struct {
    void (*open)(const char *dir);
    void (*put)(const char *key, const char *value, int length, int durable);
    int (*get)(const char *key);
    void (*sync)(void);
} engine;

// LMDB
static MDB_env *lmdb_env; static MDB_dbi lmdb_dbi;
static void lmdb_open(const char *dir) {
    if (mdb_env_create(&lmdb_env) || mdb_env_set_mapsize(lmdb_env, 8ull << 30) || mdb_env_open(lmdb_env, dir, 0, 0644)) die("lmdb open");
    MDB_txn *txn; mdb_txn_begin(lmdb_env, NULL, 0, &txn); mdb_dbi_open(txn, NULL, 0, &lmdb_dbi); mdb_txn_commit(txn);
}
static MDB_txn *lmdb_batch;
static void lmdb_put(const char *key, const char *value, int length, int durable) {
    MDB_val k = {16, (void *)key}, v = {(size_t)length, (void *)value};
    if (durable) {
        MDB_txn *txn; mdb_txn_begin(lmdb_env, NULL, 0, &txn);
        if (mdb_put(txn, lmdb_dbi, &k, &v, 0) || mdb_txn_commit(txn)) die("lmdb put");
    } else {
        if (!lmdb_batch) mdb_txn_begin(lmdb_env, NULL, 0, &lmdb_batch);
        if (mdb_put(lmdb_batch, lmdb_dbi, &k, &v, 0)) die("lmdb put");
    }
}
static int lmdb_get(const char *key) {
    MDB_txn *txn; mdb_txn_begin(lmdb_env, NULL, MDB_RDONLY, &txn);
    MDB_val k = {16, (void *)key}, v; int found = mdb_get(txn, lmdb_dbi, &k, &v) == 0; mdb_txn_abort(txn); return found;
}
static void lmdb_sync(void) { if (lmdb_batch) { mdb_txn_commit(lmdb_batch); lmdb_batch = NULL; } mdb_env_sync(lmdb_env, 1); }

// SQLite
static sqlite3 *sql; static sqlite3_stmt *sql_insert, *sql_select;
static void sqlite_open(const char *dir) {
    char path[4096]; snprintf(path, sizeof path, "%s/kv.sqlite", dir);
    if (sqlite3_open(path, &sql)) die("sqlite open");
    sqlite3_exec(sql, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                      "CREATE TABLE IF NOT EXISTS kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;", 0, 0, 0);
    sqlite3_prepare_v2(sql, "INSERT OR REPLACE INTO kv VALUES(?, ?)", -1, &sql_insert, 0);
    sqlite3_prepare_v2(sql, "SELECT v FROM kv WHERE k = ?", -1, &sql_select, 0);
}
static int sqlite_in_batch;
static void sqlite_put(const char *key, const char *value, int length, int durable) {
    if (!durable && !sqlite_in_batch) { sqlite3_exec(sql, "BEGIN", 0, 0, 0); sqlite_in_batch = 1; }
    sqlite3_bind_blob(sql_insert, 1, key, 16, SQLITE_STATIC);
    sqlite3_bind_blob(sql_insert, 2, value, length, SQLITE_STATIC);
    if (sqlite3_step(sql_insert) != SQLITE_DONE) die("sqlite insert");
    sqlite3_reset(sql_insert);
}
static int sqlite_get(const char *key) {
    sqlite3_bind_blob(sql_select, 1, key, 16, SQLITE_STATIC);
    int found = sqlite3_step(sql_select) == SQLITE_ROW; sqlite3_reset(sql_select); return found;
}
static void sqlite_sync(void) { if (sqlite_in_batch) { sqlite3_exec(sql, "COMMIT", 0, 0, 0); sqlite_in_batch = 0; } }

// RocksDB
static rocksdb_t *rocks; static rocksdb_writeoptions_t *rocks_sync, *rocks_nosync; static rocksdb_readoptions_t *rocks_read;
static void rocks_open(const char *dir) {
    rocksdb_options_t *options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(options, 1);
    char *error = NULL; rocks = rocksdb_open(options, dir, &error); if (error) die(error);
    rocks_sync = rocksdb_writeoptions_create(); rocksdb_writeoptions_set_sync(rocks_sync, 1);
    rocks_nosync = rocksdb_writeoptions_create(); rocks_read = rocksdb_readoptions_create();
}
static void rocks_put(const char *key, const char *value, int length, int durable) {
    char *error = NULL; rocksdb_put(rocks, durable ? rocks_sync : rocks_nosync, key, 16, value, (size_t)length, &error); if (error) die(error);
}
static int rocks_get(const char *key) {
    char *error = NULL; size_t length; char *value = rocksdb_get(rocks, rocks_read, key, 16, &length, &error);
    if (error) die(error);
    int found = value != NULL;
    free(value);
    return found;
}
static void rocks_sync_all(void) { char *error = NULL; rocksdb_flushoptions_t *f = rocksdb_flushoptions_create(); rocksdb_flush(rocks, f, &error); }

int main(int argc, char **argv) {
    if (argc != 6) die("usage: kvpeers lmdb|sqlite|rocksdb DIR insert SECONDS VALUE_BYTES | load KEYS VALUE_BYTES | read KEYS SECONDS");
    engine engines[] = {{lmdb_open, lmdb_put, lmdb_get, lmdb_sync}, {sqlite_open, sqlite_put, sqlite_get, sqlite_sync},
                        {rocks_open, rocks_put, rocks_get, rocks_sync_all}};
    const char *name = argv[1], *dir = argv[2], *mode = argv[3];
    engine *e = !strcmp(name, "lmdb") ? &engines[0] : !strcmp(name, "sqlite") ? &engines[1] : !strcmp(name, "rocksdb") ? &engines[2] : NULL;
    if (!e) die("unknown engine");
    mkdir(dir, 0755);
    e->open(dir);
    rng_state ^= now_ns();
    char key[17], value[4096];
    memset(value, 0xA5, sizeof value);
    if (!strcmp(mode, "load")) {
        long keys = atol(argv[4]); int length = atoi(argv[5]);
        for (long i = 0; i < keys; i++) { make_key(key, (uint64_t)i); e->put(key, value, length, 0); }
        e->sync();
        printf("{\"tool\":\"%s\",\"mode\":\"load\",\"keys\":%ld}\n", name, keys);
        return 0;
    }
    int is_insert = !strcmp(mode, "insert");
    double seconds = atof(is_insert ? argv[4] : argv[5]);
    long keys = is_insert ? 0 : atol(argv[4]);
    int length = is_insert ? atoi(argv[5]) : 0;
    size_t capacity = 4000000; uint64_t *latencies = malloc(capacity * sizeof *latencies); size_t count = 0;
    uint64_t start = now_ns(), deadline = start + (uint64_t)(seconds * 1e9); long misses = 0;
    while (1) {
        uint64_t began = now_ns();
        if (began >= deadline || count == capacity) break;
        if (is_insert) { make_key(key, next_random()); e->put(key, value, length, 1); }
        else { make_key(key, next_random() % (uint64_t)keys); if (!e->get(key)) misses++; }
        latencies[count++] = now_ns() - began;
    }
    double elapsed = (double)(now_ns() - start) / 1e9;
    qsort(latencies, count, sizeof *latencies, compare_u64);
    printf("{\"tool\":\"%s\",\"mode\":\"%s\",\"ops_per_s\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"misses\":%ld}\n", name, mode,
           count / elapsed, count ? latencies[count / 2] / 1000.0 : 0, count ? latencies[count * 99 / 100] / 1000.0 : 0, misses);
    return 0;
}
