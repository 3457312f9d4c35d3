/*
 * cycles: 1000 ioeng_open / one IO / ioeng_close cycles:
 *   phase 1: the backend under test (IOENG_TEST_BACKEND);
 *   phase 2 (uring run only): alternating io_uring / AIO.
 * (An AIO cycle costs ~35 ms here: the kernel's io_destroy waits for an RCU grace
 * period — a raw io_setup/io_destroy loop in C is just as slow.)
 * Each cycle does one IO (even cycles write a 4 KiB block, odd cycles read it back and
 * verify it) and closes with 0. After every close the thread count (/proc/self/task)
 * and fd count (/proc/self/fd) must be back at their starting values (close joins both
 * threads and releases the ring fd). RSS (/proc/self/statm) may grow by less than
 * 2 MiB from after a 50-cycle warm-up to the end.
 *
 * Env: IOENG_TEST_BACKEND, IOENG_CYCLES (default 1000), IOENG_CYCLES_RSS_KB (2048).
 */
#include "rel.h"

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "re");
    CHECK(f != NULL, "open statm");
    long size = 0, res = 0;
    CHECK(fscanf(f, "%ld %ld", &size, &res) == 2, "parse statm");
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void phase(const char *name, int alternate, ioeng_backend_t be, int n, int fd,
                  unsigned char *wbuf, unsigned char *rbuf)
{
    const int warm = 50;
    int t0 = rel_count_threads(), f0 = rel_count_fds();
    long rss_warm = 0;
    int counts[3] = {0, 0, 0};
    int settled = 0;
    double start = rel_now();
    for (int i = 0; i < n; i++) {
        if (i == warm)
            rss_warm = rss_kb();
        ioeng_backend_t b = alternate ? ((i & 1) ? IOENG_BACKEND_AIO : IOENG_BACKEND_URING) : be;
        counts[b]++;
        ioeng_t *h = tu_open(b, (uint32_t)(1u << (i % 8)), 0, 0, 0);
        struct rel_done d = {0, 0};
        int write = (i % 2 == 0);
        uint64_t off = (uint64_t)(i / 2 % 64) * 4096;
        if (write)
            for (int k = 0; k < 4096; k += 8) {
                uint64_t v = tu_mix64((uint64_t)i * 4096 + (uint64_t)k);
                memcpy(wbuf + k, &v, 8);
            }
        else
            memset(rbuf, 0, 4096);
        ioeng_req_t q = {.op = write ? IOENG_OP_WRITE : IOENG_OP_READ,
                         .prio = (uint32_t)(i / 2 % 2), .fd = fd, .buf = write ? wbuf : rbuf,
                         .len = 4096, .offset = off};
        CHECK(ioeng_submit(h, &q, rel_on_done, &d) == 0, "cycle %d: submit", i);
        if (i % 3 == 0) {
            /* close right away: the pending request must still complete before close
             * returns */
        } else {
            for (int ms = 0; ms < 10000 && atomic_load(&d.ncb) == 0; ms++)
                rel_sleep_us(100);
        }
        tu_close(h);
        CHECK(atomic_load(&d.ncb) == 1, "cycle %d (%s): %d callbacks by the time close returned",
              i, tu_backend_name(b), atomic_load(&d.ncb));
        CHECK(d.res == 4096, "cycle %d (%s): res=%" PRId64, i, tu_backend_name(b), d.res);
        if (!write)
            CHECK(memcmp(rbuf, wbuf, 4096) == 0, "cycle %d: read-back differs", i);
        /* A joined thread can still be listed in /proc/self/task for a moment (pthread_join
         * returns at the CLONE_CHILD_CLEARTID wake-up, before the kernel reaps the task),
         * and io_uring io-wq workers (iou-wrk-*) exit asynchronously after the ring is
         * gone. Give them up to 200 ms to vanish; a real leak never does. */
        int t = rel_count_threads(), f = rel_count_fds();
        if (t != t0) {
            settled++;
            for (int k = 0; k < 200 && t != t0; k++) {
                rel_sleep_us(1000);
                t = rel_count_threads();
            }
        }
        if (t != t0) {
            DIR *dd = opendir("/proc/self/task");
            struct dirent *e;
            while ((e = readdir(dd)) != NULL) {
                char comm[64];
                if (e->d_name[0] == '.')
                    continue;
                rel_thread_comm(atoi(e->d_name), comm, sizeof comm);
                fprintf(stderr, "  thread %s: %s\n", e->d_name, comm);
            }
            closedir(dd);
        }
        CHECK(t == t0, "cycle %d (%s): %d threads 200 ms after close, %d before (threads leaked)",
              i, tu_backend_name(b), t, t0);
        CHECK(f == f0, "cycle %d (%s): %d fds after close, %d before (fd leaked)", i,
              tu_backend_name(b), f, f0);
    }
    long rss_end = rss_kb();
    long limit = (long)tu_env_ll("IOENG_CYCLES_RSS_KB", 2048);
    double el = rel_now() - start;
    CHECK(rss_end - rss_warm < limit, "%s: RSS grew by %ld KiB from cycle %d to %d (limit %ld KiB)",
          name, rss_end - rss_warm, warm, n, limit);
    printf("figure: cycles %s: %d open/IO/close cycles (aio %d, uring %d) in %.2f s, threads %d "
           "-> %d, fds %d -> %d, RSS after warm-up %ld KiB -> end %ld KiB (growth %ld KiB); "
           "%d cycles saw an exiting thread still listed right after close (vanished)\n",
           name, n, counts[IOENG_BACKEND_AIO], counts[IOENG_BACKEND_URING], el, t0,
           rel_count_threads(), f0, rel_count_fds(), rss_warm, rss_end, rss_end - rss_warm,
           settled);
}

int main(void)
{
    rel_init("cycles", 240);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    int n = (int)tu_env_ll("IOENG_CYCLES", 1000);
    CHECK(n > 60, "IOENG_CYCLES must exceed the 50-cycle warm-up");
    printf("cycles: backend=%s cycles=%d\n", tu_backend_name(be), n);
    int fd = tu_scratch(TU_TMPFS, 0, NULL);
    unsigned char *wbuf = tu_alloc_uninit(4096), *rbuf = tu_alloc_uninit(4096);
    char name[64];
    snprintf(name, sizeof name, "[%s]", tu_backend_name(be));
    phase(name, 0, be, n, fd, wbuf, rbuf);
    if (be == IOENG_BACKEND_URING) /* io_uring is usable, or we would have skipped */
        phase("[alternating uring/aio]", 1, be, n, fd, wbuf, rbuf);
    free(wbuf);
    free(rbuf);
    close(fd);
    printf("cycles [%s]: OK\n", tu_backend_name(be));
    return 0;
}
