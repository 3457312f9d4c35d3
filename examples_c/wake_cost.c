/*
 * wake_cost: what a sleep and its wake-up cost on this machine, in CPU and in time.
 *
 * Two threads, each pinned to its own CPU, hand a futex word back and forth; each waits
 * in FUTEX_WAIT until the other flips the word and wakes it. One round trip is two
 * sleeps and two wake-ups. The whole process's CPU (getrusage) over the round trips is
 * the cost an engine thread pays when it sleeps instead of polling: the default idle
 * poll limit of THREADS mode (IOENG_IDLE_POLL_DEFAULT, src/scheduler/idle.rs) is set
 * to about this, so a poll never costs more CPU than the sleep it saves.
 *
 *   make -C examples_c wake_cost && examples_c/wake_cost [ROUND_TRIPS] [CPU_A CPU_B]
 *
 * Uses no libioeng.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* 1: thread B's turn, 0: thread A's. */
static _Atomic uint32_t turn;
static long round_trips;
static int cpu_b;
/* Thread B could not run on cpu_b: it gave up, and A must not wait for it. */
static atomic_bool b_failed;

static void futex_wait(uint32_t while_value)
{
    syscall(SYS_futex, &turn, FUTEX_WAIT_PRIVATE, while_value, NULL, NULL, 0);
}

static void futex_wake(void)
{
    syscall(SYS_futex, &turn, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static int pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *thread_b(void *arg)
{
    (void)arg;
    if (pin(cpu_b) != 0) {
        atomic_store(&b_failed, true);
        atomic_store(&turn, 0);
        futex_wake();
        return NULL;
    }
    for (long i = 0; i < round_trips; i++) {
        while (atomic_load(&turn) != 1)
            futex_wait(0);
        atomic_store(&turn, 0);
        futex_wake();
    }
    return NULL;
}

static double seconds(struct timeval tv)
{
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

int main(int argc, char **argv)
{
    round_trips = argc > 1 ? atol(argv[1]) : 100000;
    int cpu_a = argc > 2 ? atoi(argv[2]) : 0;
    cpu_b = argc > 3 ? atoi(argv[3]) : 1;
    if (round_trips <= 0 || argc == 3 || argc > 4) {
        fprintf(stderr, "usage: wake_cost [ROUND_TRIPS] [CPU_A CPU_B]\n");
        return 2;
    }
    int rc = pin(cpu_a);
    if (rc != 0) {
        fprintf(stderr, "wake_cost: cannot run on CPU %d: %s\n", cpu_a, strerror(rc));
        return 1;
    }
    struct rusage before, after;
    struct timespec t0, t1;
    getrusage(RUSAGE_SELF, &before);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_t b;
    rc = pthread_create(&b, NULL, thread_b, NULL);
    if (rc != 0) {
        fprintf(stderr, "wake_cost: pthread_create: %s\n", strerror(rc));
        return 1;
    }
    for (long i = 0; i < round_trips && !atomic_load(&b_failed); i++) {
        atomic_store(&turn, 1);
        futex_wake();
        /* B sets b_failed before it hands the turn back and wakes us, so once we
         * see it clear, a wait here ends. */
        while (atomic_load(&turn) != 0 && !atomic_load(&b_failed))
            futex_wait(1);
    }
    pthread_join(b, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    getrusage(RUSAGE_SELF, &after);
    if (atomic_load(&b_failed)) {
        fprintf(stderr, "wake_cost: cannot run on CPU %d\n", cpu_b);
        return 1;
    }
    double wall = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double cpu = seconds(after.ru_utime) - seconds(before.ru_utime) + seconds(after.ru_stime) -
                 seconds(before.ru_stime);
    printf("CPUs %d and %d, %ld round trips: %.1f us per round trip, %.1f us of CPU per round "
           "trip, %.1f us of CPU per sleep and wake-up\n",
           cpu_a, cpu_b, round_trips, 1e6 * wall / (double)round_trips,
           1e6 * cpu / (double)round_trips, 1e6 * cpu / (double)round_trips / 2);
    return 0;
}
