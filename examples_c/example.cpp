// example.cpp - libioeng from C++ with the installed C++17 header <ioeng.hpp>.
//
//   example_cpp [--backend aio|uring|auto]
//
// ioeng_cpp::engine owns the engine (closed by its destructor); submit() takes lambdas,
// which live on the heap until their callback ran; an exception a callback throws is
// caught by ioeng.hpp's noexcept trampoline and rethrown on this thread by the next engine
// call or rethrow() (see the top of ioeng.hpp for exactly when).
//
// Build (installed libioeng):  g++ -std=c++17 example.cpp $(pkg-config --cflags --libs ioeng)
// or CMake: find_package(ioeng) + target_link_libraries(app PRIVATE ioeng::ioeng).
#include <ioeng.hpp>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

namespace {

// Counts outstanding callbacks; wait() returns when all ran.
class Latch {
public:
    void add(unsigned n = 1)
    {
        std::lock_guard<std::mutex> g(lock_);
        pending_ += n;
    }
    void done()
    {
        std::lock_guard<std::mutex> g(lock_);
        if (--pending_ == 0)
            cv_.notify_all();
    }
    void wait()
    {
        std::unique_lock<std::mutex> g(lock_);
        cv_.wait(g, [this] { return pending_ == 0; });
    }

private:
    std::mutex lock_;
    std::condition_variable cv_;
    unsigned pending_ = 0;
};

} // namespace

namespace {

constexpr unsigned kBlocks = 32;
constexpr size_t kBlockSize = 4096;

int run(ioeng_backend_t backend)
{
    ioeng_cpp::engine engine(ioeng_cpp::config().with_backend(backend));

    char path[] = "/tmp/ioeng_example_cpp_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "mkstemp");
    unlink(path);

    // Write kBlocks blocks; each buffer is owned by its callback's lambda (shared_ptr),
    // so it lives exactly until the request finished.
    Latch latch;
    std::atomic<unsigned> errors{0};
    for (unsigned i = 0; i < kBlocks; i++) {
        auto buf = std::make_shared<std::vector<char>>(kBlockSize, static_cast<char>('A' + i % 26));
        latch.add();
        int rc = engine.submit(ioeng_cpp::write(fd, buf->data(), buf->size(), i * kBlockSize),
                               [buf, &latch, &errors](int64_t res) {
                                   if (res != static_cast<int64_t>(kBlockSize))
                                       errors++;
                                   latch.done();
                               });
        if (rc != 0)
            throw std::system_error(-rc, std::generic_category(), "ioeng_submit");
    }
    latch.wait();

    // Read everything back and compare.
    std::vector<char> back(kBlocks * kBlockSize);
    for (unsigned i = 0; i < kBlocks; i++) {
        latch.add();
        int rc = engine.submit(
            ioeng_cpp::read(fd, back.data() + i * kBlockSize, kBlockSize, i * kBlockSize),
            [&latch, &errors](int64_t res) {
                if (res != static_cast<int64_t>(kBlockSize))
                    errors++;
                latch.done();
            });
        if (rc != 0)
            throw std::system_error(-rc, std::generic_category(), "ioeng_submit");
    }
    latch.wait();
    for (size_t k = 0; k < back.size(); k++)
        if (back[k] != static_cast<char>('A' + (k / kBlockSize) % 26))
            errors++;

    // A callback that throws: the trampoline catches it on the engine thread, and the
    // exception surfaces here once the callback ran (close() waits for that; rethrow()
    // still has it afterwards).
    static char one[1];
    int rc = engine.submit(ioeng_cpp::read(fd, one, 1, 0),
                           [](int64_t) { throw std::runtime_error("thrown inside a callback"); });
    if (rc != 0)
        throw std::system_error(-rc, std::generic_category(), "ioeng_submit");
    const char *name = engine.backend_name();
    if (int closed = engine.close(); closed != 0)
        throw std::system_error(-closed, std::generic_category(), "ioeng_close");
    std::string caught;
    try {
        engine.rethrow();
    } catch (const std::runtime_error &e) {
        caught = e.what();
    }
    if (caught != "thrown inside a callback") {
        std::fprintf(stderr, "FAIL example_cpp: callback exception not rethrown\n");
        return 1;
    }

    close(fd);
    if (errors != 0) {
        std::fprintf(stderr, "FAIL example_cpp [%s]: %u errors\n", name, errors.load());
        return 1;
    }
    std::printf("example_cpp [%s]: OK: %u blocks written and read back through lambdas; "
                "a callback's exception was rethrown on the main thread\n",
                name, kBlocks);
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    ioeng_backend_t backend = IOENG_BACKEND_AUTO;
    if (argc == 3 && std::strcmp(argv[1], "--backend") == 0) {
        if (std::strcmp(argv[2], "aio") == 0)
            backend = IOENG_BACKEND_AIO;
        else if (std::strcmp(argv[2], "uring") == 0)
            backend = IOENG_BACKEND_URING;
        else if (std::strcmp(argv[2], "auto") != 0)
            argc = 0;
    }
    if (argc != 1 && argc != 3) {
        std::fprintf(stderr, "usage: %s [--backend aio|uring|auto]\n", argv[0]);
        return 2;
    }
    try {
        return run(backend);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "example_cpp: %s\n", e.what());
        return 1;
    }
}
