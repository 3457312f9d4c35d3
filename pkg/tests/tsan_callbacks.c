/*
 * ThreadSanitizer and libioeng: built with gcc -fsanitize=thread against the installed
 * library (pkg/tests/run.sh).
 *
 *   tsan_callbacks correct   a correct program must run without a race report:
 *                            - the main thread writes each job (plain stores) before
 *                              ioeng_submit; the callback reads it on an engine thread;
 *                            - callbacks bump a plain counter (the engine runs them one
 *                              at a time) and submit follow-up requests;
 *                            - the main thread reads what the callbacks wrote after
 *                              waiting on a mutex/condvar the callbacks signal.
 *   tsan_callbacks racy      the control: the main thread writes a job after submitting
 *                            it (a real race with its callback). TSan must report it,
 *                            which shows the annotations do not hide real races.
 *
 * IOENG_TEST_BACKEND=aio|uring|auto (default auto). Exit 0 = pass (TSan itself exits 66
 * when it reported anything; run.sh checks that too).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ioeng.h>

#define NJOBS 64
#define CHAIN 4 /* each job's callback resubmits it this many times */
#define BS 4096

struct job {
    int fd;
    int input;   /* written by main before submit, read by the callback */
    long output; /* written by the callback, read by main after waiting */
    int rounds;  /* written by callbacks only (serialized by the engine) */
    char buf[BS];
};

static ioeng_t *eng;
static struct job jobs[NJOBS];
static long plain_counter; /* callbacks only: relies on one callback at a time */
static int finished;       /* jobs whose last callback ran; under lock */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;

#define DIE(...)                                                                                \
    do {                                                                                       \
        fprintf(stderr, "FAIL tsan_callbacks: " __VA_ARGS__);                                  \
        fputc('\n', stderr);                                                                   \
        exit(1);                                                                               \
    } while (0)

static int submit_job(struct job *j, ioeng_op_t op);

static void on_done(void *ctx, int64_t res)
{
    struct job *j = ctx;
    if (res != BS)
        DIE("job %d: res %lld", j->input, (long long)res);
    plain_counter++;
    j->output += (long)j->input * 2;
    if (++j->rounds < CHAIN) {
        /* Alternate writes and reads of the job's block; the submit happens here, on
         * the engine thread. */
        int rc = submit_job(j, j->rounds % 2 ? IOENG_OP_READ : IOENG_OP_WRITE);
        if (rc != 0)
            DIE("resubmit from callback: %d", rc);
        return;
    }
    pthread_mutex_lock(&lock);
    finished++;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
}

static int submit_job(struct job *j, ioeng_op_t op)
{
    ioeng_req_t req = {0};
    req.op = op;
    req.prio = IOENG_PRIO_NORMAL;
    req.fd = j->fd;
    req.buf = j->buf;
    req.len = BS;
    req.offset = (uint64_t)(j - jobs) * BS;
    return ioeng_submit(eng, &req, on_done, j);
}

int main(int argc, char **argv)
{
    int racy = argc > 1 && strcmp(argv[1], "racy") == 0;
    const char *be = getenv("IOENG_TEST_BACKEND");
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    if (be && strcmp(be, "aio") == 0)
        cfg.backend = IOENG_BACKEND_AIO;
    else if (be && strcmp(be, "uring") == 0)
        cfg.backend = IOENG_BACKEND_URING;
    /* The racy control starts paused so that its late write surely precedes the callback. */
    cfg.start_paused = racy ? 1 : 0;
    int rc = ioeng_open(&cfg, &eng);
    if (rc != 0)
        DIE("ioeng_open: %s", strerror(-rc));

    char path[] = "/tmp/ioeng_tsan_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        DIE("mkstemp: %s", strerror(errno));
    unlink(path);

    for (int i = 0; i < NJOBS; i++) {
        struct job *j = &jobs[i];
        j->fd = fd;
        j->input = i + 1;
        memset(j->buf, 'a' + i % 26, BS);
        rc = submit_job(j, IOENG_OP_WRITE);
        if (rc != 0)
            DIE("submit %d: %s", i, strerror(-rc));
    }
    if (racy) {
        for (int i = 0; i < NJOBS; i++)
            jobs[i].input = -1; /* the bug: the callbacks may be reading it */
        ioeng_resume(eng);
    }

    pthread_mutex_lock(&lock);
    while (finished < NJOBS)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);

    long expect = 0;
    for (int i = 0; i < NJOBS; i++) {
        if (jobs[i].rounds != CHAIN)
            DIE("job %d: %d rounds", i, jobs[i].rounds);
        if (!racy && jobs[i].output != (long)(i + 1) * 2 * CHAIN)
            DIE("job %d: output %ld", i, jobs[i].output);
        expect += CHAIN;
        for (int k = 0; k < BS; k++)
            if (jobs[i].buf[k] != 'a' + i % 26)
                DIE("job %d: byte %d is %d", i, k, jobs[i].buf[k]);
    }
    if (plain_counter != expect)
        DIE("counter %ld, expected %ld", plain_counter, expect);
    rc = ioeng_close(eng);
    if (rc != 0)
        DIE("ioeng_close: %d", rc);
    close(fd);
    printf("tsan_callbacks %s [%s]: OK: %d jobs x %d callbacks\n", racy ? "racy" : "correct",
           be ? be : "auto", NJOBS, CHAIN);
    return 0;
}
