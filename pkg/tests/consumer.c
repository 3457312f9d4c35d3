/*
 * A program of a user who installed libioeng: built by pkg/tests/run.sh against the
 * installed tree only (pkg-config, CMake, static). Writes a block through the engine,
 * reads it back, checks the data, and checks that the header's version macros agree with
 * the library it runs against.
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

/* Forward declarations as a user's own header would write them (named structs). */
struct ioeng;
struct ioeng_req;
int consumer_submit(struct ioeng *eng, const struct ioeng_req *req);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int64_t result;
static int done;

static void on_done(void *ctx, int64_t res)
{
    (void)ctx;
    pthread_mutex_lock(&lock);
    result = res;
    done = 1;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
}

int consumer_submit(struct ioeng *eng, const struct ioeng_req *req)
{
    pthread_mutex_lock(&lock);
    done = 0;
    pthread_mutex_unlock(&lock);
    int rc = ioeng_submit(eng, req, on_done, NULL);
    if (rc != 0)
        return rc;
    pthread_mutex_lock(&lock);
    while (!done)
        pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    return 0;
}

int main(void)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", IOENG_VERSION_MAJOR, IOENG_VERSION_MINOR,
             IOENG_VERSION_PATCH);
    if (strcmp(ioeng_version(), want) != 0) {
        fprintf(stderr, "FAIL consumer: header %s, library %s\n", want, ioeng_version());
        return 1;
    }

    ioeng_t *eng;
    int rc = ioeng_open(NULL, &eng);
    if (rc != 0) {
        fprintf(stderr, "FAIL consumer: ioeng_open: %s\n", strerror(-rc));
        return 1;
    }
    char path[] = "/tmp/ioeng_consumer_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        return 1;
    }
    unlink(path);

    static char out[4096], in[4096];
    memset(out, 'x', sizeof out);
    ioeng_req_t req = {0};
    req.op = IOENG_OP_WRITE;
    req.prio = IOENG_PRIO_NORMAL;
    req.fd = fd;
    req.buf = out;
    req.len = sizeof out;
    if ((rc = consumer_submit(eng, &req)) != 0 || result != (int64_t)sizeof out) {
        fprintf(stderr, "FAIL consumer: write rc %d res %lld\n", rc, (long long)result);
        return 1;
    }
    req.op = IOENG_OP_READ;
    req.buf = in;
    if ((rc = consumer_submit(eng, &req)) != 0 || result != (int64_t)sizeof in ||
        memcmp(in, out, sizeof in) != 0) {
        fprintf(stderr, "FAIL consumer: read rc %d res %lld\n", rc, (long long)result);
        return 1;
    }
    const char *backend = ioeng_backend(eng) == IOENG_BACKEND_URING ? "io_uring" : "aio";
    if ((rc = ioeng_close(eng)) != 0) {
        fprintf(stderr, "FAIL consumer: ioeng_close: %d\n", rc);
        return 1;
    }
    close(fd);
    printf("consumer: OK: libioeng %s, wrote and read back 4 KiB via %s\n", ioeng_version(),
           backend);
    return 0;
}
