/*
 * Write-then-read-back with checksums from 4 submitting threads, each owning
 * its own region of the file, on ext4 with O_DIRECT and on tmpfs buffered.
 * Requests are 4 KiB..256 KiB, 4 KiB aligned, some HIGH priority. The written
 * data is checked twice: with plain pread() and through the engine's READs.
 */
#include "test_util.h"

#define NTHREADS 4
#define REGION (8u << 20) /* bytes per thread */
#define MAXREQ 512

struct rq {
    uint64_t off, len;
    unsigned char *wbuf, *rbuf;
    uint64_t sum;
    int64_t wres, rres;
    int wfired, rfired;
    tu_waiter_t *w;
};

struct thr {
    ioeng_t *h;
    int fd, idx;
    struct rq rq[MAXREQ];
    int n;
    tu_waiter_t w;
};

static void write_cb(void *ctx, int64_t res)
{
    struct rq *r = ctx;
    r->wres = res;
    __atomic_add_fetch(&r->wfired, 1, __ATOMIC_SEQ_CST);
    tu_waiter_add(r->w, 1);
}

static void read_cb(void *ctx, int64_t res)
{
    struct rq *r = ctx;
    r->rres = res;
    __atomic_add_fetch(&r->rfired, 1, __ATOMIC_SEQ_CST);
    tu_waiter_add(r->w, 1);
}

static void *thread_main(void *arg)
{
    struct thr *t = arg;
    /* all writes of this region, then wait, then all reads */
    for (int i = 0; i < t->n; i++) {
        struct rq *r = &t->rq[i];
        ioeng_req_t q = tu_req(IOENG_OP_WRITE, (i % 7 == 3) ? IOENG_PRIO_HIGH : IOENG_PRIO_NORMAL,
                               t->fd, r->wbuf, r->len, r->off);
        int rc = ioeng_submit(t->h, &q, write_cb, r);
        CHECK(rc == 0, "thread %d: submit write %d = %d", t->idx, i, rc);
    }
    tu_waiter_wait(&t->w, (uint64_t)t->n, 60);
    for (int i = 0; i < t->n; i++) {
        struct rq *r = &t->rq[i];
        CHECK(r->wres == (int64_t)r->len, "thread %d: write %d (off %" PRIu64 " len %" PRIu64
              ") res %s", t->idx, i, r->off, r->len, tu_errname(r->wres));
    }
    for (int i = 0; i < t->n; i++) {
        struct rq *r = &t->rq[i];
        ioeng_req_t q = tu_req(IOENG_OP_READ, (i % 5 == 1) ? IOENG_PRIO_HIGH : IOENG_PRIO_NORMAL,
                               t->fd, r->rbuf, r->len, r->off);
        int rc = ioeng_submit(t->h, &q, read_cb, r);
        CHECK(rc == 0, "thread %d: submit read %d = %d", t->idx, i, rc);
    }
    tu_waiter_wait(&t->w, 2 * (uint64_t)t->n, 60);
    return NULL;
}

/* Returns the number of requests run. */
static int run_case(ioeng_backend_t be, enum tu_fs fs, int direct, uint32_t depth, uint32_t batch,
                    uint64_t seed)
{
    char path[PATH_MAX];
    int fd = tu_scratch(fs, direct, path);
    ioeng_t *h = tu_open(be, depth, batch, 0, 0);
    static struct thr thr[NTHREADS];
    pthread_t tid[NTHREADS];
    uint64_t rng = seed;
    int total = 0;

    for (int t = 0; t < NTHREADS; t++) {
        struct thr *T = &thr[t];
        memset(T, 0, sizeof *T);
        T->h = h;
        T->fd = fd;
        T->idx = t;
        tu_waiter_init(&T->w);
        uint64_t off = (uint64_t)t * REGION, end = off + REGION;
        while (off < end) {
            CHECK(T->n < MAXREQ, "too many requests");
            uint64_t len = 4096 * tu_rand_range(&rng, 1, 64);
            if (off + len > end)
                len = end - off;
            struct rq *r = &T->rq[T->n++];
            r->off = off;
            r->len = len;
            r->wbuf = tu_alloc(len);
            r->rbuf = tu_alloc(len);
            memset(r->rbuf, 0xEE, len);
            tu_fill(r->wbuf, len, seed * 1000003 + off);
            r->sum = tu_fnv1a(r->wbuf, len);
            r->w = &T->w;
            r->wres = r->rres = INT64_MIN;
            off += len;
        }
        total += T->n;
    }
    for (int t = 0; t < NTHREADS; t++)
        CHECK(pthread_create(&tid[t], NULL, thread_main, &thr[t]) == 0, "pthread_create");
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(tid[t], NULL);

    ioeng_stats_t st = tu_wait_idle(h, 2 * (uint64_t)total);
    CHECK_EQ(st.submitted, 2 * (uint64_t)total, "stats.submitted");
    CHECK_EQ(st.completed, 2 * (uint64_t)total, "stats.completed");
    CHECK(st.kernel_submit_calls >= 1, "kernel_submit_calls = 0");
    tu_close(h);

    /* Independent check of the file contents with a buffered fd. */
    int vfd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(vfd >= 0, "open %s: %s", path, strerror(errno));
    struct stat sb;
    CHECK(fstat(vfd, &sb) == 0, "fstat");
    CHECK_EQ(sb.st_size, (off_t)NTHREADS * REGION, "file size after writes (%s)", tu_fs_name(fs));
    for (int t = 0; t < NTHREADS; t++) {
        struct thr *T = &thr[t];
        for (int i = 0; i < T->n; i++) {
            struct rq *r = &T->rq[i];
            CHECK_EQ(r->wfired, 1, "write callback count (thread %d req %d)", t, i);
            CHECK_EQ(r->rfired, 1, "read callback count (thread %d req %d)", t, i);
            CHECK(r->rres == (int64_t)r->len, "thread %d read %d (off %" PRIu64 " len %" PRIu64
                  ") res %s", t, i, r->off, r->len, tu_errname(r->rres));
            CHECK(tu_fnv1a(r->rbuf, r->len) == r->sum,
                  "%s: engine read-back checksum mismatch thread %d req %d off %" PRIu64
                  " len %" PRIu64, tu_fs_name(fs), t, i, r->off, r->len);
            unsigned char *tmp = malloc(r->len);
            CHECK(tmp, "malloc");
            tu_pread_all(vfd, tmp, r->len, (off_t)r->off);
            CHECK(tu_fnv1a(tmp, r->len) == r->sum,
                  "%s: pread checksum mismatch thread %d req %d off %" PRIu64, tu_fs_name(fs), t,
                  i, r->off);
            free(tmp);
            free(r->wbuf);
            free(r->rbuf);
        }
        tu_waiter_destroy(&T->w);
    }
    close(vfd);
    close(fd);
    return total;
}

int main(void)
{
    tu_init("test_rw", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);

    int n1 = run_case(be, TU_EXT4, 1, 32, 0, 1);
    int n2 = run_case(be, TU_TMPFS, 0, 128, 8, 2);
    int n3 = run_case(be, TU_EXT4, 0, 4, 2, 3); /* ext4 buffered, tiny depth */

    printf("test_rw [%s]: OK: 4 threads wrote+read back with FNV-1a checks: ext4 O_DIRECT %d reqs "
           "(depth 32), tmpfs buffered %d reqs (depth 128, batch 8), ext4 buffered %d reqs "
           "(depth 4); pread confirms file contents\n",
           tu_backend_name(be), n1, n2, n3);
    return 0;
}
