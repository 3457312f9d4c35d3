// A library built with -fvisibility=hidden that hands out an ioeng_cpp::engine holding a
// stored callback exception (HPP_LIB), and a program that uses it and forks (the main
// part): each has its own copy of ioeng.hpp's inline variables, so the fork check must
// use the copy of the code that made the engine (before: the child threw the parent's
// exception). Built and run by pkg/tests/run.sh.
#include <ioeng.hpp>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef HPP_LIB
__attribute__((visibility("default"))) ioeng_cpp::engine *make_engine(ioeng_backend_t b)
{
    static char one[1];
    int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    auto *eng = new ioeng_cpp::engine(ioeng_cpp::config().with_backend(b).paused());
    // Two throwing callables: once the second exception is dropped, the first is stored.
    for (int i = 0; i < 2; i++)
        eng->submit(ioeng_cpp::read(fd, one, 1, 0),
                    [](int64_t) { throw std::runtime_error("parent's"); });
    eng->resume();
    auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (eng->dropped_exceptions() < 1 && std::chrono::steady_clock::now() < limit)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return eng;
}
#else
ioeng_cpp::engine *make_engine(ioeng_backend_t b);

int main(int argc, char **argv)
{
    ioeng_backend_t b = argc > 1 && argv[1][0] == 'a' ? IOENG_BACKEND_AIO : IOENG_BACKEND_URING;
    ioeng_cpp::engine *eng = make_engine(b);
    if (eng->dropped_exceptions() != 1) {
        std::printf("no stored exception to test with\n");
        return 1;
    }
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(10);
        try {
            eng->rethrow();
            static char one[1];
            int rc = eng->submit(ioeng_cpp::read(0, one, 1, 0), [](int64_t) {});
            _exit(rc == -ESRCH ? 0 : 3);
        } catch (const std::exception &e) {
            std::printf("child threw the parent's exception: %s\n", e.what());
            _exit(2);
        }
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        std::printf("child: status %d\n", st);
        return 1;
    }
    try {
        eng->rethrow();
        std::printf("the parent lost its exception\n");
        return 1;
    } catch (const std::runtime_error &) {
    }
    delete eng;
    std::printf("forked child of a program using a hidden-visibility library's engine: -ESRCH, "
                "no exception; the parent keeps its own\n");
    return 0;
}
#endif
