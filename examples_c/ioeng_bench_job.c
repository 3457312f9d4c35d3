/*
 * ioeng_bench_job.c - the IO loop of ioeng_bench: each job thread keeps its slots
 * outstanding, the completion callback records the latency and issues the slot's next
 * request (alone, or in groups with --batch-submit / --group-submit), and slots refused
 * with -EAGAIN go back to their job thread (THREADS: job_main's retry loop; POLLED:
 * poll_loop, which also drives the engine). See ioeng_bench.h for the other files.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "ioeng_bench.h"

struct hist hist[NCLASS];
struct bench_state g;

static inline bool is_random(const struct job *j)
{
    return j->rw == RW_RANDREAD || j->rw == RW_RANDWRITE || j->rw == RW_RANDRW;
}

/* Choose the slot's next request: op, priority, offset. */
static inline void prepare(struct job *j, struct slot *s)
{
    bool read;
    switch (j->rw) {
    case RW_READ:
    case RW_RANDREAD: read = true; break;
    case RW_WRITE:
    case RW_RANDWRITE: read = false; break;
    default: read = xrand_below(&j->rng, 100) < opt.rwmixread; break;
    }
    uint64_t block;
    if (is_random(j)) {
        block = xrand_below(&j->rng, j->nblocks);
    } else {
        block = j->seq_off;
        if (++j->seq_off >= j->nblocks)
            j->seq_off = 0;
    }
    bool high = g.prio_all || (g.prio_thresh && xrand(&j->rng) < g.prio_thresh);
    s->req.op = read ? IOENG_OP_READ : IOENG_OP_WRITE;
    s->req.prio = high ? IOENG_PRIO_HIGH : IOENG_PRIO_NORMAL;
    s->req.offset = block * j->bs;
    s->req.flags = (opt.fixedbufs ? IOENG_REQ_FIXED_BUF : 0) |
                   (opt.fixedfiles ? IOENG_REQ_FIXED_FILE : 0) |
                   (opt.dsync && !read ? IOENG_REQ_DSYNC : 0);
}

static void note_error(int64_t res)
{
    if (atomic_fetch_add(&g.errors, 1) == 0) {
        atomic_store(&g.first_error, (int)(res < INT_MIN ? INT_MIN : res));
    }
    atomic_store(&g.stop, true); /* stop the run; main notices */
}

static void wake_job(struct job *j)
{
    pthread_mutex_lock(&j->lock);
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->lock);
}

/* A slot leaves the loop for good (stopping or failed). */
static void retire(struct job *j)
{
    if (atomic_fetch_sub(&j->outstanding, 1) == 1)
        wake_job(j);
}


static void on_complete(void *ctx, int64_t res);

static inline int issue(struct slot *s, uint64_t now)
{
    s->t_submit = now;
    if (opt.batch_submit)
        atomic_fetch_add_explicit(&s->job->in_engine, 1, memory_order_relaxed);
    int rc = ioeng_submit(g.eng, &s->req, on_complete, s);
    if (rc != 0 && opt.batch_submit)
        atomic_fetch_sub_explicit(&s->job->in_engine, 1, memory_order_relaxed);
    return rc;
}

/* --batch-submit, from a callback: sends the job's waiting group with one
 * ioeng_submit_batch() (--group-submit: one ioeng_submit() per slot, stopping at the
 * first refusal); slots not accepted go to the retry list (-EAGAIN) or fail. */
static void flush_group(struct job *j, uint64_t now)
{
    unsigned n = j->ngroup;
    for (unsigned i = 0; i < n; i++) {
        j->group[i]->t_submit = now;
        j->group_reqs[i] = j->group[i]->req;
        j->group_ctxs[i] = j->group[i];
    }
    j->ngroup = 0;
    atomic_fetch_add_explicit(&j->in_engine, n, memory_order_relaxed);
    int rc;
    if (opt.group_singles) {
        unsigned i = 0;
        rc = 0;
        while (i < n && (rc = ioeng_submit(g.eng, &j->group_reqs[i], on_complete, j->group_ctxs[i])) == 0)
            i++;
        if (i > 0)
            rc = (int)i;
    } else {
        rc = ioeng_submit_batch(g.eng, j->group_reqs, n, on_complete, j->group_ctxs);
    }
    unsigned accepted = rc > 0 ? (unsigned)rc : 0;
    if (accepted == n)
        return;
    atomic_fetch_sub_explicit(&j->in_engine, n - accepted, memory_order_relaxed);
    if (rc < 0 && rc != -EAGAIN) {
        for (unsigned i = accepted; i < n; i++) {
            note_error(rc);
            retire(j);
        }
        return;
    }
    atomic_fetch_add_explicit(&g.eagain_fallbacks, n - accepted, memory_order_relaxed);
    pthread_mutex_lock(&j->lock);
    for (unsigned i = accepted; i < n; i++) {
        struct slot *s = j->group[i];
        s->next = j->retry;
        j->retry = s;
    }
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->lock);
}

/* A completed request: a failure stops the run; a success counts in its latency class
 * while the measured phase is on. */
static inline void record(const struct slot *s, int64_t res, uint64_t now)
{
    if (res != (int64_t)s->req.len) {
        note_error(res);
    } else if (atomic_load_explicit(&g.recording, memory_order_relaxed)) {
        struct job *j = s->job;
        j->ios++;
        j->bytes += (uint64_t)res;
        if (opt.latency) {
            unsigned c = (s->req.prio == IOENG_PRIO_HIGH ? 2 : 0) + (s->req.op == IOENG_OP_WRITE);
            h_add(&hist[c], now - s->t_submit);
            h_add(&j->lat, now - s->t_submit);
        }
    }
}

/* --batch-submit / --group-submit: the completed slot joins its job's group, which goes
 * out when full or when nothing else of the job is in flight (else no completion would
 * ever flush it). */
static inline void reissue_grouped(struct job *j, struct slot *s, uint64_t now)
{
    atomic_fetch_sub_explicit(&j->in_engine, 1, memory_order_relaxed);
    if (!atomic_load_explicit(&g.stop, memory_order_relaxed)) {
        prepare(j, s);
        j->group[j->ngroup++] = s;
        if (j->ngroup >= opt.batch_submit ||
            atomic_load_explicit(&j->in_engine, memory_order_relaxed) == 0)
            flush_group(j, now);
        return;
    }
    /* Stopping: the slot retires; so do the ones waiting in its group. */
    for (unsigned i = 0; i < j->ngroup; i++)
        retire(j);
    j->ngroup = 0;
    retire(j);
}

/* Default: the completed slot's next request goes out at once, from this callback. */
static inline void reissue_single(struct job *j, struct slot *s, uint64_t now)
{
    if (!atomic_load_explicit(&g.stop, memory_order_relaxed)) {
        prepare(j, s);
        int rc = issue(s, now);
        if (rc == 0)
            return;
        if (rc == -EAGAIN) {
            /* Queue full: hand the slot to its submitting thread. */
            atomic_fetch_add_explicit(&g.eagain_fallbacks, 1, memory_order_relaxed);
            pthread_mutex_lock(&j->lock);
            s->next = j->retry;
            j->retry = s;
            pthread_cond_broadcast(&j->cond);
            pthread_mutex_unlock(&j->lock);
            return;
        }
        note_error(rc);
    }
    retire(j);
}

static void on_complete(void *ctx, int64_t res)
{
    /* --latency 0: no clock read per IO (t_submit stays 0, unused). */
    uint64_t now = opt.latency ? now_ns() : 0;
    struct slot *s = ctx;
    struct job *j = s->job;

    if (opt.check_serial && atomic_fetch_add(&g.in_callback, 1) != 0)
        atomic_fetch_add(&g.overlaps, 1);
    record(s, res, now);
    if (opt.batch_submit)
        reissue_grouped(j, s, now);
    else
        reissue_single(j, s, now);
    if (opt.check_serial)
        atomic_fetch_sub(&g.in_callback, 1);
}

/* Issues `s` from a submitting thread (or, with `park_only`, skips straight to the
 * refusal path). A slot refused with -EAGAIN (queue at capacity) is parked on the job's
 * retry list; any other error is counted and the slot retired. Returns the rc. */
static int issue_or_park(struct job *j, struct slot *s, bool park_only)
{
    int rc = park_only ? -EAGAIN : issue(s, now_ns());
    if (rc == -EAGAIN) {
        pthread_mutex_lock(&j->lock);
        s->next = j->retry;
        j->retry = s;
        pthread_mutex_unlock(&j->lock);
    } else if (rc < 0) {
        note_error(rc);
        retire(j);
    }
    return rc;
}

/* Issues a detached retry list in order. Once one is refused, the queue is still full:
 * the rest are parked for the next round. Returns whether any was refused. */
static bool issue_list(struct job *j, struct slot *list)
{
    bool refused = false;
    while (list) {
        struct slot *s = list;
        list = s->next;
        if (issue_or_park(j, s, refused) == -EAGAIN)
            refused = true;
    }
    return refused;
}

/* POLLED mode: the first job's thread is the engine's only driver, for every job. It
 * polls (callbacks run here and issue each slot's next request) and re-issues slots
 * refused with -EAGAIN, until the run stops and every slot of every job is back. */
static void poll_loop(void)
{
    for (;;) {
        /* Read once per pass: every job is then checked against the same answer. */
        bool stop = atomic_load(&g.stop);
        bool all_back = atomic_load(&g.first_submits_done) == opt.numjobs;
        for (unsigned i = 0; i < opt.numjobs; i++) {
            struct job *j = &g.jobs[i];
            pthread_mutex_lock(&j->lock);
            struct slot *list = j->retry;
            j->retry = NULL;
            pthread_mutex_unlock(&j->lock);
            if (stop) {
                for (; list; list = list->next)
                    atomic_fetch_sub(&j->outstanding, 1);
                all_back &= atomic_load(&j->outstanding) == 0;
            }
            issue_list(j, list);
        }
        if (stop && all_back) {
            if (opt.single_poller)
                g.close_rc = ioeng_close(g.eng);
            return;
        }
        int rc = ioeng_poll(g.eng, opt.poll_min, 10000000);
        if (rc < 0 && rc != -EINTR)
            die("ioeng_poll: %s", strerror(-rc));
    }
}

/* THREADS mode: retry slots refused with -EAGAIN until the run stops, then wait for the
 * rest (the engine's threads run the callbacks). */
static void retry_loop(struct job *j)
{
    pthread_mutex_lock(&j->lock);
    for (;;) {
        if (atomic_load(&g.stop)) {
            unsigned dropped = 0;
            for (struct slot *s = j->retry; s; s = s->next)
                dropped++;
            j->retry = NULL;
            if (dropped)
                atomic_fetch_sub(&j->outstanding, dropped);
            if (atomic_load(&j->outstanding) == 0)
                break;
            pthread_cond_wait(&j->cond, &j->lock);
            continue;
        }
        if (!j->retry) {
            pthread_cond_wait(&j->cond, &j->lock);
            continue;
        }
        struct slot *list = j->retry;
        j->retry = NULL;
        pthread_mutex_unlock(&j->lock);
        if (issue_list(j, list)) {
            /* Let completions drain the queue a little before retrying. */
            struct timespec ts = { 0, 20000 };
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&j->lock);
    }
    pthread_mutex_unlock(&j->lock);
}

static void *job_main(void *arg)
{
    struct job *j = arg;

    /* Prepare every slot before the first submit: from then on only callbacks touch
     * the job's PRNG and sequential offset. */
    for (unsigned i = 0; i < j->nslots; i++)
        prepare(j, &j->slots[i]);
    atomic_store(&j->outstanding, j->nslots);
    pthread_barrier_wait(&g.start);

    for (unsigned i = 0; i < j->nslots; i++)
        issue_or_park(j, &j->slots[i], false);
    atomic_fetch_add(&g.first_submits_done, 1);

    if (opt.mode != IOENG_MODE_POLLED)
        retry_loop(j);
    else if (j->id == 0)
        poll_loop(); /* the other jobs' threads are done: job 0's drives their slots too */
    return NULL;
}

/* Job `i`'s share of the slots (from `*next_slot` on), each with its own buffer. */
static void init_job(struct job *j, unsigned i, uint64_t *seed, unsigned *next_slot)
{
    j->id = i;
    j->nslots = opt.iodepth / opt.numjobs + (i < opt.iodepth % opt.numjobs);
    j->rw = opt.rw;
    j->bs = opt.bs;
    j->lat.min = UINT64_MAX;
    if (opt.njob_classes) {
        const struct job_class *jc = &opt.job_classes[i];
        if (jc->qd)
            j->nslots = jc->qd;
        j->rw = jc->rw;
        if (jc->bs)
            j->bs = jc->bs;
        int rc = ioeng_class_open(g.eng, &jc->cfg, &j->class_id);
        if (rc < 0)
            die("ioeng_class_open(job %u): %s", i, strerror(-rc));
    }
    j->nblocks = opt.size / j->bs;
    j->slots = &g.slots[*next_slot];
    *next_slot += j->nslots;
    j->rng = splitmix64(seed) | 1;
    j->seq_off = j->nblocks * i / opt.numjobs;
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->cond, NULL);
    for (unsigned k = 0; k < j->nslots; k++) {
        struct slot *s = &j->slots[k];
        void *buf;
        if (posix_memalign(&buf, ALIGN, j->bs))
            die("out of memory for %u buffers of %" PRIu64 " bytes", opt.iodepth, j->bs);
        /* Write data: something other than zeros. */
        for (uint64_t b = 0; b + 8 <= j->bs; b += 8) {
            uint64_t v = splitmix64(seed);
            memcpy((char *)buf + b, &v, 8);
        }
        s->job = j;
        s->req.fd = opt.fixedfiles ? 0 : g.fd; /* FIXED_FILE: index 0 of ioeng_register_files */
        s->req.buf = buf;
        s->req.len = j->bs;
        s->req.class_id = j->class_id;
        s->req.buf_index = (uint32_t)(s - g.slots);
    }
    if (opt.batch_submit) {
        j->group = calloc(j->nslots, sizeof *j->group);
        j->group_reqs = calloc(j->nslots, sizeof *j->group_reqs);
        j->group_ctxs = calloc(j->nslots, sizeof *j->group_ctxs);
        if (!j->group || !j->group_reqs || !j->group_ctxs)
            die("out of memory");
    }
}

/* Jobs and slots: iodepth split as evenly as possible over numjobs; with --fixedbufs the
 * slot buffers are registered with the engine (g.eng, open by now). */
void setup_jobs(void)
{
    g.jobs = calloc(opt.numjobs, sizeof *g.jobs);
    g.slots = calloc(opt.iodepth, sizeof *g.slots);
    if (!g.jobs || !g.slots)
        die("out of memory");
    pthread_barrier_init(&g.start, NULL, opt.numjobs + 1);
    uint64_t seed = opt.seed;
    unsigned next_slot = 0;
    for (unsigned i = 0; i < opt.numjobs; i++)
        init_job(&g.jobs[i], i, &seed, &next_slot);
    if (opt.fixedbufs) {
        struct iovec *iov = calloc(opt.iodepth, sizeof *iov);
        if (!iov)
            die("out of memory");
        for (unsigned i = 0; i < opt.iodepth; i++)
            iov[i] = (struct iovec){ g.slots[i].req.buf, g.slots[i].req.len };
        int rc = ioeng_register_buffers(g.eng, iov, opt.iodepth);
        if (rc < 0)
            die("ioeng_register_buffers(%u x %" PRIu64 " bytes): %s", opt.iodepth, opt.bs,
                strerror(-rc));
        free(iov);
    }
    if (opt.fixedfiles) {
        int rc = ioeng_register_files(g.eng, &g.fd, 1);
        if (rc < 0)
            die("ioeng_register_files: %s", strerror(-rc));
    }
}

/* The job threads; they wait at g.start for the main thread. */
void start_jobs(void)
{
    for (unsigned i = 0; i < opt.numjobs; i++) {
        int rc = pthread_create(&g.jobs[i].thread, NULL, job_main, &g.jobs[i]);
        if (rc)
            die("pthread_create: %s", strerror(rc));
    }
}

/* Stop issuing and wait until every job has all its slots back. */
void stop_jobs(void)
{
    atomic_store(&g.stop, true);
    for (unsigned i = 0; i < opt.numjobs; i++)
        wake_job(&g.jobs[i]);
    for (unsigned i = 0; i < opt.numjobs; i++)
        pthread_join(g.jobs[i].thread, NULL);
}

void free_jobs(void)
{
    for (unsigned i = 0; i < opt.iodepth; i++)
        free(g.slots[i].req.buf);
    free(g.slots);
    for (unsigned i = 0; i < opt.numjobs; i++) {
        free(g.jobs[i].group);
        free(g.jobs[i].group_reqs);
        free(g.jobs[i].group_ctxs);
    }
    free(g.jobs);
}
