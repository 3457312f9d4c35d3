/*
 * Seccomp for the tests that take a syscall away from the library (test_seccomp,
 * test_fixed_files): from the call on, the listed syscalls of the calling thread (and of
 * threads it starts later) fail with EPERM, for good; other syscalls and other
 * architectures' calls are allowed. Run it in a child process.
 */
#ifndef IOENG_SECCOMP_UTIL_H
#define IOENG_SECCOMP_UTIL_H

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "test_util.h"

#if defined(__x86_64__)
#define TU_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define TU_AUDIT_ARCH AUDIT_ARCH_AARCH64
#elif defined(__riscv) && __riscv_xlen == 64
#define TU_AUDIT_ARCH AUDIT_ARCH_RISCV64
#else
#error "add the AUDIT_ARCH of this architecture"
#endif

enum { TU_MAX_REFUSED = 8 };

static inline void tu_refuse_syscalls(const long *nrs, unsigned n)
{
    CHECK(n >= 1 && n <= TU_MAX_REFUSED, "tu_refuse_syscalls: %u syscalls", n);
    struct sock_filter f[4 + TU_MAX_REFUSED + 2];
    unsigned len = 0;
    f[len++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    f[len++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TU_AUDIT_ARCH, 1, 0);
    f[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW); /* other arch */
    f[len++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    /* Each match jumps over the remaining matches and the ALLOW to the ERRNO return. */
    for (unsigned i = 0; i < n; i++)
        f[len++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nrs[i],
                                                (uint8_t)(n - i), 0);
    f[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[len++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA));
    struct sock_fprog prog = {.len = (unsigned short)len, .filter = f};
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0, "PR_SET_SECCOMP: %s",
          strerror(errno));
}

#endif
