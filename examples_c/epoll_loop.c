/*
 * epoll_loop.c - libioeng in IOENG_MODE_POLLED inside a single-threaded event loop.
 *
 *   epoll_loop [--backend aio|uring|auto] [--seconds S] [FILE]
 *
 * One thread, no engine threads: an epoll loop serves libioeng's event fd next to a
 * timerfd that ticks every 100 ms (standing in for the rest of a program's events; the
 * engine needs no timer of its own: its event fd also fires when a queued request's
 * deadline or a delayed retry falls due, see ioeng_event_fd() in ioeng.h). The
 * loop keeps 32 random 4 KiB reads of FILE in flight: each completion callback (run by
 * ioeng_poll() on this thread) checks the data and issues the next read. Each tick prints
 * progress. After S seconds (default 2) it stops issuing, closes the engine (which drains
 * on this thread) and prints a summary; exit status 0 only if every read returned the
 * right bytes.
 *
 * FILE must not exist (it is created, filled with a known pattern and removed); without
 * FILE a mkstemp() file in /tmp is used.
 *
 * Build: gcc -std=c11 -D_GNU_SOURCE -I../include epoll_loop.c \
 *            -L../target/release -lioeng -Wl,-rpath,$PWD/../target/release
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "ioeng.h"

#define BLOCK 4096u
#define NBLOCKS 4096u /* a 16 MiB file */
#define INFLIGHT 32u

struct read_slot {
    uint64_t block;
    unsigned char *buf;
};

static ioeng_t *eng;
static int fd;
static bool stopping;
static uint64_t done, bad, rng = 0x9e3779b97f4a7c15ull;
static unsigned outstanding;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Every 8-byte word of block b holds b * 8192 + its index: easy to check. */
static void fill_block(unsigned char *p, uint64_t b)
{
    for (unsigned i = 0; i < BLOCK / 8; i++) {
        uint64_t v = b * 8192 + i;
        memcpy(p + 8 * i, &v, 8);
    }
}

static bool block_ok(const unsigned char *p, uint64_t b)
{
    for (unsigned i = 0; i < BLOCK / 8; i++) {
        uint64_t v;
        memcpy(&v, p + 8 * i, 8);
        if (v != b * 8192 + i)
            return false;
    }
    return true;
}

static void on_read(void *ctx, int64_t res);

static void issue(struct read_slot *s)
{
    s->block = next_rand() % NBLOCKS;
    ioeng_req_t req = {.op = IOENG_OP_READ, .fd = fd, .buf = s->buf, .len = BLOCK, .offset = s->block * BLOCK};
    int rc = ioeng_submit(eng, &req, on_read, s);
    if (rc == 0) {
        outstanding++;
    } else {
        fprintf(stderr, "epoll_loop: ioeng_submit: %s\n", strerror(-rc));
        bad++;
    }
}

/* Runs inside ioeng_poll(), on the loop's thread: no locking needed anywhere. */
static void on_read(void *ctx, int64_t res)
{
    struct read_slot *s = ctx;
    outstanding--;
    if (res != BLOCK || !block_ok(s->buf, s->block))
        bad++;
    done++;
    if (!stopping)
        issue(s);
}

static int die(const char *what)
{
    fprintf(stderr, "epoll_loop: %s: %s\n", what, strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    ioeng_backend_t backend = IOENG_BACKEND_AUTO;
    double seconds = 2;
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            const char *b = argv[++i];
            backend = !strcmp(b, "aio") ? IOENG_BACKEND_AIO : !strcmp(b, "uring") ? IOENG_BACKEND_URING : IOENG_BACKEND_AUTO;
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (argv[i][0] != '-' && !file) {
            file = argv[i];
        } else {
            fprintf(stderr, "usage: %s [--backend aio|uring|auto] [--seconds S] [FILE]\n", argv[0]);
            return 2;
        }
    }

    /* The file: NBLOCKS blocks of a known pattern. */
    char tmpl[] = "/tmp/ioeng_epoll_XXXXXX";
    fd = file ? open(file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : mkostemp(tmpl, O_CLOEXEC);
    if (fd < 0)
        return die("create file");
    unlink(file ? file : tmpl);
    static unsigned char pattern[BLOCK];
    for (uint64_t b = 0; b < NBLOCKS; b++) {
        fill_block(pattern, b);
        if (pwrite(fd, pattern, BLOCK, (off_t)(b * BLOCK)) != BLOCK)
            return die("pwrite");
    }

    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = backend;
    cfg.mode = IOENG_MODE_POLLED;
    cfg.depth = INFLIGHT;
    int rc = ioeng_open(&cfg, &eng);
    if (rc < 0) {
        fprintf(stderr, "epoll_loop: ioeng_open: %s\n", strerror(-rc));
        return 1;
    }
    int efd = ioeng_event_fd(eng);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (efd < 0 || tfd < 0 || ep < 0)
        return die("event fd / timerfd / epoll");
    struct itimerspec tick = {.it_interval = {0, 100000000}, .it_value = {0, 100000000}};
    struct epoll_event ev_io = {.events = EPOLLIN, .data.u32 = 1}, ev_tick = {.events = EPOLLIN, .data.u32 = 2};
    if (timerfd_settime(tfd, 0, &tick, NULL) || epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev_io) ||
        epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev_tick))
        return die("timerfd_settime / epoll_ctl");

    struct read_slot slots[INFLIGHT];
    for (unsigned i = 0; i < INFLIGHT; i++) {
        slots[i].buf = aligned_alloc(BLOCK, BLOCK);
        if (!slots[i].buf)
            return die("aligned_alloc");
        issue(&slots[i]); /* only queues; the loop's first ioeng_poll submits */
    }

    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned ticks = 0, polls = 0;
    while (!stopping) {
        struct epoll_event evs[2];
        int n = epoll_wait(ep, evs, 2, -1);
        if (n < 0 && errno != EINTR)
            return die("epoll_wait");
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == 1) {
                /* Work for the engine: submit, reap, run callbacks; never waits. */
                rc = ioeng_poll(eng, 0, 0);
                if (rc < 0 && rc != -EINTR) {
                    fprintf(stderr, "epoll_loop: ioeng_poll: %s\n", strerror(-rc));
                    return 1;
                }
                polls++;
            } else {
                uint64_t expirations;
                /* A busy machine can merge expirations: count each one. */
                if (read(tfd, &expirations, sizeof expirations) == sizeof expirations)
                    ticks += (unsigned)expirations;
                clock_gettime(CLOCK_MONOTONIC, &now);
                double t = (double)(now.tv_sec - t0.tv_sec) + (double)(now.tv_nsec - t0.tv_nsec) / 1e9;
                printf("tick %2u: %.1f s, %" PRIu64 " reads done, %u in flight\n", ticks, t, done, outstanding);
                if (t >= seconds)
                    stopping = true;
            }
        }
    }
    uint64_t before_close = done;
    rc = ioeng_close(eng); /* drains the last reads on this thread */
    printf("epoll_loop: %s, %" PRIu64 " reads verified (%" PRIu64 " during close), %u polls, %u ticks, "
           "%" PRIu64 " bad; in flight at the end: %u\n",
           backend == IOENG_BACKEND_AUTO ? "auto" : backend == IOENG_BACKEND_AIO ? "aio" : "uring", done,
           done - before_close, polls, ticks, bad, outstanding);
    for (unsigned i = 0; i < INFLIGHT; i++)
        free(slots[i].buf);
    close(ep);
    close(tfd);
    close(fd);
    return rc == 0 && bad == 0 && outstanding == 0 && done > INFLIGHT ? 0 : 1;
}
