/*
 * signals: heavy IO while the process is bombarded with SIGUSR1.
 *
 * A SIGUSR1 handler (installed without SA_RESTART) counts deliveries and records the
 * tid it ran on. A sender thread does kill(getpid(), SIGUSR1) every 100 us (every 4th
 * signal is instead tgkill'ed at one of the submitting threads) while 4
 * submitting threads (2 on a tmpfs buffered file, 2 on an ext4 O_DIRECT file) keep 8
 * requests each outstanding: reads and writes of 1..16 blocks of 4 KiB. Every block
 * carries a header (block number, version, checksum of its payload); every read is
 * checked against the model's version and the checksum, and a final read-back checks
 * every block.
 *
 * Asserts: no request lost or duplicated (per-slot state machine + sequence in ctx),
 * exact res, ioeng_submit never fails (no -EINTR leaks), the data, idle stats; the
 * handler ran many times and only on the application's threads (main, sender,
 * submitters) — never on the engine threads ioeng-submit / ioeng-complete (found via
 * /proc/self/task/<tid>/comm); callbacks ran only on engine threads.
 * IOENG_TEST_MODE=polled: there are no engine threads; callbacks run on the test's
 * driver thread inside ioeng_poll (whose waits the signals interrupt: -EINTR is retried),
 * which is then one of the application's threads.
 *
 * Env: IOENG_TEST_BACKEND, IOENG_SIGNALS_SECONDS (default 3), IOENG_SIGNALS_SEED.
 */
#include "rel.h"

#define NSUB 4
#define OUT 8
#define BS 4096
#define MAXBLK 16
#define REGION_BLOCKS 2048 /* 8 MiB per thread */

enum { S_FREE = 0, S_INFLIGHT, S_COMPLETING, S_DONE };

/* ---------------------------------------------------------------- handler */

#define MAXTIDS 256
static _Atomic uint64_t g_sigcount;
static _Atomic int g_sigtids[MAXTIDS];

static void record_tid(_Atomic int *set, int tid)
{
    for (int i = 0; i < MAXTIDS; i++) {
        int cur = atomic_load(&set[i]);
        if (cur == tid)
            return;
        if (cur == 0) {
            int z = 0;
            if (atomic_compare_exchange_strong(&set[i], &z, tid) || z == tid)
                return;
        }
    }
}

static void on_sigusr1(int sig)
{
    (void)sig;
    int saved = errno;
    atomic_fetch_add(&g_sigcount, 1);
    record_tid(g_sigtids, (int)syscall(SYS_gettid));
    errno = saved;
}

/* ---------------------------------------------------------------- IO */

struct slot {
    _Atomic int state;
    uint64_t seq;
    int is_write;
    uint64_t blk; /* first block (relative to the region) */
    uint32_t nblk;
    unsigned char *buf;
    int64_t res;
};

struct sub {
    int idx;
    pthread_t th;
    _Atomic int tid;
    int fd;
    int direct;
    uint64_t base; /* region offset in its file */
    uint32_t *ver; /* per block: current version (0 = initial content) */
    struct slot slots[OUT];
    uint64_t seq;
    rel_rng_t rng;
    tu_waiter_t done; /* counts callbacks */
    uint64_t reaped;  /* done count at the last reap */
    uint64_t reads, writes, blocks_verified;
};

static ioeng_t *g_eng;
static struct sub g_s[NSUB];
static double g_deadline;
static _Atomic int g_stop_sender;
static _Atomic int g_cbtids[MAXTIDS];
static _Atomic uint64_t g_sent, g_sent_thread;

/* Payload checksum stored in the block header: the low 32 bits of FNV-1a 64. */
static uint32_t checksum(const unsigned char *p, size_t n) { return (uint32_t)tu_fnv1a(p, n); }

static void make_block(unsigned char *b, int t, uint64_t blk, uint32_t ver)
{
    rel_rng_t r;
    rel_rng_seed(&r, ((uint64_t)t << 40) ^ (blk << 20) ^ ver ^ 0x5151);
    rel_fill_random(&r, b + 16, BS - 16);
    uint64_t tag = ((uint64_t)0x10E6 << 48) | ((uint64_t)t << 32) | blk;
    uint32_t ck = checksum(b + 16, BS - 16);
    memcpy(b, &tag, 8);
    memcpy(b + 8, &ver, 4);
    memcpy(b + 12, &ck, 4);
}

static void check_block(const unsigned char *b, int t, uint64_t blk, uint32_t want_ver,
                        const char *what)
{
    uint64_t tag;
    uint32_t ver, ck;
    memcpy(&tag, b, 8);
    memcpy(&ver, b + 8, 4);
    memcpy(&ck, b + 12, 4);
    uint64_t want_tag = ((uint64_t)0x10E6 << 48) | ((uint64_t)t << 32) | blk;
    if (tag != want_tag)
        FAILF("%s: thread %d block %" PRIu64 ": header tag %016" PRIx64 " want %016" PRIx64
              " (misplaced or torn data)", what, t, blk, tag, want_tag);
    if (ver != want_ver)
        FAILF("%s: thread %d block %" PRIu64 ": version %u want %u (stale or lost write)", what,
              t, blk, ver, want_ver);
    uint32_t c = checksum(b + 16, BS - 16);
    if (c != ck)
        FAILF("%s: thread %d block %" PRIu64 ": checksum %08x want %08x (corrupt payload)", what,
              t, blk, c, ck);
}

static void on_done(void *ctx, int64_t res)
{
    uint64_t v = (uint64_t)(uintptr_t)ctx;
    int t = (int)(v >> 56), s = (int)((v >> 48) & 0xff);
    uint64_t seq = v & 0xffffffffffffULL;
    CHECK(t < NSUB && s < OUT, "garbage ctx");
    record_tid(g_cbtids, (int)rel_gettid());
    struct sub *w = &g_s[t];
    struct slot *sl = &w->slots[s];
    int expect = S_INFLIGHT;
    if (!atomic_compare_exchange_strong(&sl->state, &expect, S_COMPLETING))
        FAILF("thread %d slot %d: callback (res %" PRId64 ") while state %d: duplicate/stale", t,
              s, res, expect);
    CHECK((sl->seq & 0xffffffffffffULL) == seq, "thread %d slot %d: stale callback: ctx seq %" PRIu64 ", in flight seq %" PRIu64 " (res %" PRId64 ")", t, s, seq, sl->seq, res);
    sl->res = res;
    atomic_store(&sl->state, S_DONE);
    tu_waiter_add(&w->done, 1);
}

static int overlaps(struct sub *w, uint64_t blk, uint32_t n)
{
    for (int i = 0; i < OUT; i++) {
        struct slot *o = &w->slots[i];
        if (atomic_load(&o->state) != S_FREE && blk < o->blk + o->nblk && o->blk < blk + n)
            return 1;
    }
    return 0;
}

static void finish(struct sub *w, struct slot *sl)
{
    int64_t want = (int64_t)sl->nblk * BS;
    if (sl->res != want)
        FAILF("thread %d: %s of %u blocks at %" PRIu64 ": res=%" PRId64 " want %" PRId64, w->idx,
              sl->is_write ? "WRITE" : "READ", sl->nblk, sl->blk, sl->res, want);
    if (!sl->is_write) {
        for (uint32_t i = 0; i < sl->nblk; i++)
            check_block(sl->buf + (size_t)i * BS, w->idx, sl->blk + i, w->ver[sl->blk + i], "read");
        w->blocks_verified += sl->nblk;
    }
    atomic_store(&sl->state, S_FREE);
}

static void start(struct sub *w, int s)
{
    struct slot *sl = &w->slots[s];
    uint32_t n = 0;
    uint64_t blk = 0;
    int found = 0;
    for (int tries = 0; tries < 16 && !found; tries++) {
        n = (uint32_t)rel_range(&w->rng, 1, MAXBLK);
        blk = rel_range(&w->rng, 0, REGION_BLOCKS - n);
        found = !overlaps(w, blk, n);
    }
    if (!found)
        return;
    sl->is_write = (rel_rand(&w->rng) & 1) != 0;
    sl->blk = blk;
    sl->nblk = n;
    if (sl->is_write) {
        for (uint32_t i = 0; i < n; i++) {
            w->ver[blk + i]++;
            make_block(sl->buf + (size_t)i * BS, w->idx, blk + i, w->ver[blk + i]);
        }
        w->writes++;
    } else {
        memset(sl->buf, 0xEE, (size_t)n * BS);
        w->reads++;
    }
    sl->seq = ++w->seq;
    sl->res = INT64_MIN;
    atomic_store(&sl->state, S_INFLIGHT);
    ioeng_req_t req = {.op = sl->is_write ? IOENG_OP_WRITE : IOENG_OP_READ,
                       .prio = (rel_rand(&w->rng) % 4 == 0) ? IOENG_PRIO_HIGH : IOENG_PRIO_NORMAL,
                       .fd = w->fd, .buf = sl->buf, .len = (uint64_t)n * BS,
                       .offset = w->base + blk * BS};
    void *ctx = (void *)(uintptr_t)(((uint64_t)w->idx << 56) | ((uint64_t)s << 48) |
                                    (sl->seq & 0xffffffffffffULL));
    int rc = ioeng_submit(g_eng, &req, on_done, ctx);
    if (rc != 0)
        FAILF("thread %d: ioeng_submit = %d under signals (must be 0)", w->idx, rc);
}

static int busy(struct sub *w)
{
    int n = 0;
    for (int i = 0; i < OUT; i++)
        n += atomic_load(&w->slots[i].state) != S_FREE;
    return n;
}

static void reap(struct sub *w)
{
    uint64_t c = tu_waiter_wait_for(&w->done, w->reaped + 1, 60);
    if (c <= w->reaped)
        FAILF("thread %d: no callback for 60 s (lost request?)", w->idx);
    w->reaped = c;
    for (int i = 0; i < OUT; i++)
        if (atomic_load(&w->slots[i].state) == S_DONE)
            finish(w, &w->slots[i]);
}

static void *sub_main(void *arg)
{
    struct sub *w = arg;
    w->tid = rel_gettid();
    while (rel_now() < g_deadline) {
        for (int s = 0; s < OUT; s++)
            if (atomic_load(&w->slots[s].state) == S_FREE)
                start(w, s);
        if (busy(w))
            reap(w);
    }
    while (busy(w))
        reap(w);
    return NULL;
}

static _Atomic int g_sender_tid;
static void *sender_main(void *arg)
{
    (void)arg;
    g_sender_tid = rel_gettid();
    pid_t pid = getpid();
    uint64_t i = 0;
    while (!atomic_load(&g_stop_sender)) {
        /* Mostly process-directed (kill); every 4th one thread-directed at a submitting
         * thread, so ioeng_submit() and the submitters' waits get interrupted too. */
        pid_t target = (i % 4 == 3) ? g_s[(i / 4) % NSUB].tid : 0;
        if (target) {
            if (syscall(SYS_tgkill, pid, target, SIGUSR1) == 0)
                atomic_fetch_add(&g_sent_thread, 1);
        } else {
            CHECK(kill(pid, SIGUSR1) == 0, "kill: %s", strerror(errno));
            atomic_fetch_add(&g_sent, 1);
        }
        i++;
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL); /* EINTR just shortens the pause */
    }
    return NULL;
}

static int in_list(int tid, const pid_t *list, int n)
{
    for (int i = 0; i < n; i++)
        if (list[i] == tid)
            return 1;
    return 0;
}

static void blocked_mask(pid_t tid, char *out, size_t n)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    snprintf(out, n, "?");
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "SigBlk:", 7) == 0) {
            line[strcspn(line, "\n")] = 0;
            size_t l = strlen(line + 8);
            if (l >= n)
                l = n - 1;
            memcpy(out, line + 8, l);
            out[l] = 0;
        }
    fclose(f);
}

int main(void)
{
    rel_init("signals", 180);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    double secs = (double)tu_env_ll("IOENG_SIGNALS_SECONDS", 3);
    uint64_t seed = (uint64_t)tu_env_ll("IOENG_SIGNALS_SEED", (long long)time(NULL));
    printf("signals: backend=%s seed=%" PRIu64 " seconds=%.0f submitters=%d outstanding=%d\n",
           tu_backend_name(be), seed, secs, NSUB, OUT);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sa.sa_flags = 0; /* no SA_RESTART: interrupted syscalls fail with EINTR */
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");

    int fds[2] = {tu_scratch(TU_TMPFS, 0, NULL), tu_scratch(TU_EXT4, 1, NULL)};
    unsigned char *blk = tu_alloc_uninit((size_t)REGION_BLOCKS * BS);
    for (int t = 0; t < NSUB; t++) {
        struct sub *w = &g_s[t];
        memset(w, 0, sizeof *w);
        w->idx = t;
        w->direct = t >= 2;
        w->fd = fds[w->direct];
        w->base = (uint64_t)(t % 2) * REGION_BLOCKS * BS;
        w->ver = calloc(REGION_BLOCKS, sizeof *w->ver);
        CHECK(w->ver != NULL, "calloc");
        rel_rng_seed(&w->rng, seed + (uint64_t)t);
        tu_waiter_init(&w->done);
        for (int s = 0; s < OUT; s++)
            w->slots[s].buf = tu_alloc_uninit((size_t)MAXBLK * BS);
        for (uint64_t b = 0; b < REGION_BLOCKS; b++)
            make_block(blk + b * BS, t, b, 0);
        tu_pwrite_all(w->fd, blk, (size_t)REGION_BLOCKS * BS, (off_t)w->base);
    }

    pid_t main_tid = rel_gettid();
    g_eng = tu_open(be, 32, 0, 0, 0);
    g_deadline = rel_now() + secs;
    pthread_t sender;
    CHECK(pthread_create(&sender, NULL, sender_main, NULL) == 0, "pthread_create");
    for (int t = 0; t < NSUB; t++)
        CHECK(pthread_create(&g_s[t].th, NULL, sub_main, &g_s[t]) == 0, "pthread_create");

    /* While it runs: find the engine threads by name. */
    rel_sleep_us(200000);
    pid_t engine_tids[8];
    int neng = 0;
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL, "opendir");
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char comm[64];
        pid_t tid = (pid_t)atoi(e->d_name);
        rel_thread_comm(tid, comm, sizeof comm);
        if (strncmp(comm, "ioeng-", 6) == 0 && neng < 8)
            engine_tids[neng++] = tid;
    }
    closedir(d);
    int polled = tu_mode() == IOENG_MODE_POLLED;
    char mask0[64] = "-", mask1[64] = "-";
    if (polled) {
        CHECK_EQ(neng, 0, "engine threads in POLLED mode");
        engine_tids[0] = engine_tids[1] = 0;
    } else {
        CHECK_EQ(neng, 2, "engine threads named ioeng-* (ioeng-submit, ioeng-complete)");
        blocked_mask(engine_tids[0], mask0, sizeof mask0);
        blocked_mask(engine_tids[1], mask1, sizeof mask1);
    }

    while (rel_now() < g_deadline)
        rel_sleep_us(10000);
    for (int t = 0; t < NSUB; t++)
        pthread_join(g_s[t].th, NULL);
    atomic_store(&g_stop_sender, 1);
    pthread_join(sender, NULL);

    uint64_t reads = 0, writes = 0, verified = 0;
    for (int t = 0; t < NSUB; t++) {
        reads += g_s[t].reads;
        writes += g_s[t].writes;
        verified += g_s[t].blocks_verified;
    }
    REL_CHECK_IDLE_STATS(g_eng, reads + writes);

    /* Final read-back through the engine, one region at a time. */
    for (int t = 0; t < NSUB; t++) {
        struct sub *w = &g_s[t];
        for (uint64_t b = 0; b < REGION_BLOCKS; b += 256) {
            struct slot *sl = &w->slots[0];
            sl->is_write = 0;
            sl->blk = b;
            sl->nblk = 256;
            free(sl->buf);
            sl->buf = tu_alloc_uninit((size_t)256 * BS);
            sl->seq = ++w->seq;
            atomic_store(&sl->state, S_INFLIGHT);
            ioeng_req_t req = {.op = IOENG_OP_READ, .prio = IOENG_PRIO_NORMAL, .fd = w->fd,
                               .buf = sl->buf, .len = 256 * BS, .offset = w->base + b * BS};
            void *ctx = (void *)(uintptr_t)(((uint64_t)t << 56) | (sl->seq & 0xffffffffffffULL));
            CHECK(ioeng_submit(g_eng, &req, on_done, ctx) == 0, "final read submit");
            do /* reap() may return for a stale wake-up: wait for this request */
                reap(w);
            while (atomic_load(&sl->state) != S_FREE);
            verified += 256;
            reads++;
        }
    }
    REL_CHECK_IDLE_STATS(g_eng, reads + writes);
    tu_close(g_eng);

    /* Where did the handler run? */
    pid_t ours[NSUB + 3];
    int nours = 0;
    ours[nours++] = main_tid;
    ours[nours++] = g_sender_tid;
    for (int t = 0; t < NSUB; t++)
        ours[nours++] = g_s[t].tid;
    if (polled) { /* the driver thread, where every callback ran */
        ours[nours++] = atomic_load(&g_cbtids[0]);
        CHECK(atomic_load(&g_cbtids[0]) && !atomic_load(&g_cbtids[1]),
              "POLLED callbacks ran on more than one thread");
    }
    int handler_threads = 0;
    char where[256] = "";
    for (int i = 0; i < MAXTIDS; i++) {
        int tid = atomic_load(&g_sigtids[i]);
        if (!tid)
            break;
        handler_threads++;
        CHECK(!in_list(tid, engine_tids, neng), "SIGUSR1 handler ran on engine thread %d", tid);
        CHECK(in_list(tid, ours, nours), "SIGUSR1 handler ran on thread %d, which is not one of "
              "the application's threads (main/sender/submitters)", tid);
        size_t l = strlen(where);
        snprintf(where + l, sizeof where - l, "%s%d", l ? "," : "", tid);
    }
    int cb_threads = 0;
    for (int i = 0; i < MAXTIDS; i++) {
        int tid = atomic_load(&g_cbtids[i]);
        if (!tid)
            break;
        cb_threads++;
        if (!polled)
            CHECK(in_list(tid, engine_tids, neng), "a callback ran on thread %d, not an engine thread",
                  tid);
    }
    uint64_t nsig = atomic_load(&g_sigcount);
    CHECK(nsig >= (uint64_t)(100 * secs), "SIGUSR1 delivered only %" PRIu64 " times", nsig);
    printf("figure: signals [%s %s]: %.0f s, IOs=%" PRIu64 " (reads %" PRIu64 ", writes %" PRIu64
           "), blocks verified by checksum=%" PRIu64 ", SIGUSR1 sent=%" PRIu64 " (kill) + %" PRIu64
           " (tgkill to submitters), handler ran %"
           PRIu64 " times on %d app threads [%s], engine threads %d,%d (SigBlk %s / %s) never ran "
           "it; callbacks on %d engine thread(s)\n",
           tu_backend_name(be), tu_mode_name(), secs, reads + writes, reads, writes, verified,
           atomic_load(&g_sent), atomic_load(&g_sent_thread), nsig, handler_threads, where, (int)engine_tids[0],
           (int)engine_tids[1], mask0, mask1, cb_threads);
    for (int t = 0; t < NSUB; t++) {
        for (int s = 0; s < OUT; s++)
            free(g_s[t].slots[s].buf);
        free(g_s[t].ver);
        tu_waiter_destroy(&g_s[t].done);
    }
    free(blk);
    close(fds[0]);
    close(fds[1]);
    printf("signals [%s]: OK\n", tu_backend_name(be));
    return 0;
}
