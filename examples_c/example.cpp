// example.cpp - libioeng from C++: a small RAII wrapper and a program that uses it.
//
//   example_cpp [--backend aio|uring|auto]
//
// The wrapper (namespace ioeng_cpp) is the part worth copying:
//  - Engine owns an ioeng_t*: ioeng_open in the constructor (throws std::system_error),
//    ioeng_close in the destructor (which first runs every pending callback).
//  - submit() takes any callable (a lambda with captures, std::function, ...). It is moved
//    to the heap, handed to C as the ctx pointer and freed after it ran exactly once.
//  - The C callback is a noexcept trampoline: an exception thrown by the callable never
//    unwinds through libioeng's C frames (undefined behaviour); it is caught on the engine
//    thread and rethrown on the user's thread by rethrow_callback_error().
//
// Build (installed libioeng):  g++ -std=c++17 example.cpp $(pkg-config --cflags --libs ioeng)
// or CMake: find_package(ioeng) + target_link_libraries(app PRIVATE ioeng::ioeng).
#include <ioeng.h>

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

namespace ioeng_cpp {

class Engine {
public:
    using Callback = std::function<void(int64_t res)>;

    // cfg nullptr = defaults. Throws std::system_error with the errno of ioeng_open.
    explicit Engine(const ioeng_config_t *cfg = nullptr) : state_(new State)
    {
        int rc = ioeng_open(cfg, &h_);
        if (rc != 0)
            throw std::system_error(-rc, std::generic_category(), "ioeng_open");
    }

    // Runs every pending callback, joins the engine threads, frees the engine. Must not
    // run inside one of this engine's callbacks (ioeng_close would return -EDEADLK).
    ~Engine() { close(); }

    // The same, now; idempotent. Afterwards submit() returns -EINVAL and
    // rethrow_callback_error() still reports what the callbacks threw.
    void close() noexcept
    {
        if (h_) {
            int rc = ioeng_close(h_);
            if (rc != 0) // -EDEADLK: closed inside its own callback, a program bug
                std::fprintf(stderr, "ioeng_close: %s\n", std::strerror(-rc));
            h_ = nullptr;
        }
    }

    Engine(const Engine &) = delete;
    Engine &operator=(const Engine &) = delete;
    Engine(Engine &&other) noexcept
        : h_(std::exchange(other.h_, nullptr)), state_(std::move(other.state_))
    {
    }
    Engine &operator=(Engine &&other) noexcept
    {
        if (this != &other) {
            close();
            h_ = std::exchange(other.h_, nullptr);
            state_ = std::move(other.state_);
        }
        return *this;
    }

    // Queues one request. 0: `fn(res)` runs exactly once on an engine thread. < 0
    // (-errno, as ioeng_submit; -ENOMEM if the callable could not be stored): it never
    // runs. Never throws; callable from any thread, including from a callback.
    template <typename F> int submit(const ioeng_req_t &req, F &&fn) noexcept
    {
        std::unique_ptr<Pending> p;
        try {
            p.reset(new Pending{Callback(std::forward<F>(fn)), state_.get()});
        } catch (...) {
            return -ENOMEM;
        }
        int rc = ioeng_submit(h_, &req, &Engine::trampoline, p.get());
        if (rc == 0)
            p.release(); // the trampoline owns it now
        return rc;
    }

    // Rethrows (on the calling thread) the first exception a callback threw, if any.
    void rethrow_callback_error()
    {
        std::exception_ptr e;
        {
            std::lock_guard<std::mutex> g(state_->lock);
            e = std::exchange(state_->error, nullptr);
        }
        if (e)
            std::rethrow_exception(e);
    }

    ioeng_t *get() const noexcept { return h_; }

private:
    // Heap-allocated so that a moved Engine keeps the address pending callbacks point to.
    struct State {
        std::mutex lock;
        std::exception_ptr error;
    };
    struct Pending {
        Callback fn;
        State *state;
    };

    // The only function libioeng calls: never lets an exception reach the C frames.
    static void trampoline(void *ctx, int64_t res) noexcept
    {
        std::unique_ptr<Pending> p(static_cast<Pending *>(ctx));
        try {
            p->fn(res);
        } catch (...) {
            std::lock_guard<std::mutex> g(p->state->lock);
            if (!p->state->error)
                p->state->error = std::current_exception();
        }
    }

    ioeng_t *h_ = nullptr;
    std::unique_ptr<State> state_;
};

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

} // namespace ioeng_cpp

namespace {

constexpr unsigned kBlocks = 32;
constexpr size_t kBlockSize = 4096;

ioeng_req_t make_req(ioeng_op_t op, int fd, void *buf, size_t len, uint64_t offset)
{
    ioeng_req_t req{};
    req.op = op;
    req.prio = IOENG_PRIO_NORMAL;
    req.fd = fd;
    req.buf = buf;
    req.len = len;
    req.offset = offset;
    return req;
}

int run(ioeng_backend_t backend)
{
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = backend;
    ioeng_cpp::Engine engine(&cfg);

    char path[] = "/tmp/ioeng_example_cpp_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "mkstemp");
    unlink(path);

    // Write kBlocks blocks; each buffer is owned by its callback's lambda (shared_ptr),
    // so it lives exactly until the request finished.
    ioeng_cpp::Latch latch;
    std::atomic<unsigned> errors{0};
    for (unsigned i = 0; i < kBlocks; i++) {
        auto buf = std::make_shared<std::vector<char>>(kBlockSize, static_cast<char>('A' + i % 26));
        latch.add();
        int rc = engine.submit(make_req(IOENG_OP_WRITE, fd, buf->data(), buf->size(), i * kBlockSize),
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
            make_req(IOENG_OP_READ, fd, back.data() + i * kBlockSize, kBlockSize, i * kBlockSize),
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
    // exception surfaces here once the callback ran (close() waits for that).
    static char one[1];
    int rc = engine.submit(make_req(IOENG_OP_READ, fd, one, 1, 0),
                           [](int64_t) { throw std::runtime_error("thrown inside a callback"); });
    if (rc != 0)
        throw std::system_error(-rc, std::generic_category(), "ioeng_submit");
    const char *name = ioeng_backend(engine.get()) == IOENG_BACKEND_URING ? "io_uring" : "aio";
    engine.close();
    std::string caught;
    try {
        engine.rethrow_callback_error();
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
