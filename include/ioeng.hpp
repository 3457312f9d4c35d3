// ioeng.hpp - C++17 interface to libioeng (installed next to ioeng.h; header-only over the C
// ABI, so it links with the same -lioeng / ioeng::ioeng and adds no symbol of its own).
//
//   ioeng_cpp::engine eng(ioeng_cpp::config().with_backend(IOENG_BACKEND_URING));
//   int rc = eng.submit(ioeng_cpp::writev(fd, iov, 2, tail).with_flags(IOENG_REQ_DSYNC),
//                       [&](int64_t res) { on_commit(res); });
//
// What it adds to ioeng.h:
//  - engine: owns an ioeng_t (RAII). Move-only. The destructor closes it; close() does the
//    same now and returns ioeng_close()'s result (0 or -errno). Closing waits, as
//    ioeng_close() does, until every accepted request completed: a read pending on a pipe
//    or socket keeps the destructor waiting (also during stack unwinding) until data
//    comes; call cancel_all() before where that can happen. The destructor does not
//    cancel, so that queued writes are not dropped.
//  - submit() takes any callable `void(int64_t res)` (a lambda with captures, a
//    std::function, ...): it is moved to the heap, owned by the engine until its callback
//    ran, and destroyed right after it, on the thread that ran the callback. libioeng calls
//    a noexcept trampoline, never the callable itself.
//  - Exceptions: a callable that throws does not unwind into libioeng (undefined behaviour
//    for a C callback). The trampoline catches the exception on the thread that ran the
//    callback (an engine thread in THREADS mode; the thread in poll() or close() in
//    POLLED mode) and stores it in the engine. The next call on any thread of submit(),
//    submit_batch(), submit_batch_raw(), cancel(), cancel_all(), resume(),
//    register_buffers(), register_files(), poll() (when it starts and again when it
//    returns: so in POLLED mode the exception of a callback that poll() ran comes out of
//    that poll(), after every other callback of that poll ran) or rethrow() takes it out
//    and throws it on that thread, before doing anything else; exactly one caller gets
//    it. Until then, an exception of another callback is dropped (dropped_exceptions()
//    counts them): the first one is kept. The request whose callable threw is complete
//    all the same; the engine keeps running.
//    Calls made inside a callback (a callable of any ioeng_cpp engine) do not throw a
//    stored exception, which belongs to another callback: a callback's chained submit()
//    is not refused for it, nor can its catch swallow it; it waits for a call outside
//    callbacks (only an explicit rethrow() inside a callback throws it there). Only the
//    header's own trampolines mark a callback so: a plain C callback (submit_batch_raw(),
//    or C calls on native_handle()) that calls a method may get the exception thrown
//    there, and must catch it, as no C callback may let an exception out.
//    close() and the destructor never throw; after close(), rethrow() still throws what
//    the callbacks (also those run by close's drain) left; the destructor discards it;
//    move-assignment keeps it for rethrow() (or counts it as dropped when the engine
//    moved in holds one already). Exceptions are required: -fno-exceptions is an #error.
//  - Request builders returning ioeng_cpp::request (an ioeng_req_t with chainable setters),
//    with the same fields as the C builders of ioeng.h (not calling them: they are static
//    inline): read, write, readv, writev, fsync, fdatasync, fallocate, sync_file_range;
//    config: an ioeng_config_t initialised by ioeng_config_init() with chainable setters.
//    Durations (with_deadline_in, poll) saturate: seconds::max() is "never" / no limit.
//  - The one const_cast: ioeng_submit_batch() takes `void *const *ctxs` (the engine only
//    reads the array, and hands each ctx to the callback as `void *`). submit_batch_raw()
//    takes `const void *const *` and casts it once; libioeng never writes through a ctx,
//    so the cast is safe as long as your callback does not write through one that points
//    to a const object.
//
// Threads, fork, blocking: as ioeng.h says for the C calls each method makes. Methods may
// run on any number of threads at once, except close(), move-assignment and destruction,
// which must be the last use of the engine, and must not run where ioeng_close()
// refuses: inside one of its own callbacks, on any thread of a THREADS engine (a
// callback of another THREADS engine too: -EDEADLK), while another thread polls it
// (POLLED: -EBUSY), or, with IOENG_CONFIG_SINGLE_POLLER, on another thread than the one
// that polls it (-EINVAL). Destruction and move-assignment there call std::terminate, since
// freeing the engine under a running callback could only crash later. Mind where the
// last owner goes: a callable is destroyed on the thread that ran it, so a lambda that
// holds the last std::shared_ptr to an engine and runs as a THREADS engine's callback
// (that engine or another) destroys that engine there; hand such an owner to a thread
// of your own instead. In a forked child the callables of the parent's pending requests
// are never run nor freed (the child's copy of them leaks, with the engine's exception
// state); methods return -ESRCH as the C calls do, and never throw nor wait for the
// parent's stored exception (its lock may have been held by a parent thread at fork).
#ifndef IOENG_HPP
#define IOENG_HPP

#include "ioeng.h"

#include <atomic>
#include <chrono>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <system_error>
#include <type_traits>
#include <utility>

#include <pthread.h>
#include <time.h>

#if __cplusplus < 201703L
#error "ioeng.hpp needs C++17 (ioeng.h alone works from C++11)"
#endif
// Callback exceptions and ioeng_open failures are reported by throwing; there is no
// fallback that would not lose them silently.
#if !defined(__cpp_exceptions)
#error "ioeng.hpp needs C++ exceptions (not -fno-exceptions); without them use ioeng.h"
#endif

namespace ioeng_cpp {

namespace detail {

// `d` in nanoseconds, saturating at INT64_MAX; negative (and NaN) give 0. duration_cast
// alone overflows (undefined behaviour) for e.g. seconds::max(), whose count times 10^9
// does not fit in 64 bits: so the range is checked in long double first, which cannot
// overflow, and only an in-range value is converted exactly.
template <class Rep, class Period>
constexpr int64_t saturating_ns(std::chrono::duration<Rep, Period> d) noexcept
{
    long double x = std::chrono::duration<long double, std::nano>(d).count();
    if (!(x > 0))
        return 0;
    if (x >= 9.2e18L) // INT64_MAX is 9.22e18: the margin absorbs long double rounding
        return INT64_MAX;
    using cf = std::ratio_divide<Period, std::nano>;
    // One multiplication or one division of an integer count cannot overflow in range;
    // a mixed ratio (num and den > 1) could in duration_cast's intermediate product.
    if constexpr (std::is_integral_v<Rep> && (cf::num == 1 || cf::den == 1))
        return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    else
        return static_cast<int64_t>(x);
}

// ioeng_deadline_in_ns() and the request builders, written again here: those of ioeng.h
// are static inline (internal linkage), and an external inline function of this header
// that calls them is a different definition in every translation unit (ill-formed ODR
// violation). Same fields, same values: test_hpp checks them against the C builders.
inline uint64_t deadline_in_ns(uint64_t ns) noexcept
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = static_cast<uint64_t>(ts.tv_sec) * UINT64_C(1000000000) +
                   static_cast<uint64_t>(ts.tv_nsec);
    return ns > UINT64_MAX - now ? UINT64_MAX : now + ns;
}

inline ioeng_req_t make_req(ioeng_op_t op, int fd, const void *buf, uint64_t len,
                            uint64_t offset, uint32_t buf_index = 0) noexcept
{
    ioeng_req_t r;
    r.op = op;
    r.prio = IOENG_PRIO_NORMAL;
    r.fd = fd;
    r.flags = 0;
    // The engine never writes through `buf` of a WRITE, WRITEV or an iovec array.
    r.buf = const_cast<void *>(buf);
    r.len = len;
    r.offset = offset;
    r.tag = 0;
    r.deadline_ns = 0;
    r.buf_index = buf_index;
    r.class_id = 0;
    r.reserved = 0;
    return r;
}

} // namespace detail

// An ioeng_req_t (same size and layout) with chainable setters for the optional fields.
struct request : ioeng_req_t {
    request() noexcept : ioeng_req_t() {}
    request(const ioeng_req_t &r) noexcept : ioeng_req_t(r) {}

    request &with_prio(ioeng_prio_t p) noexcept { prio = p; return *this; }
    request &high() noexcept { return with_prio(IOENG_PRIO_HIGH); }
    // Or-ed into `flags` (IOENG_REQ_*).
    request &with_flags(uint32_t f) noexcept { flags |= f; return *this; }
    request &with_tag(uint64_t t) noexcept { tag = t; return *this; }
    // Absolute CLOCK_MONOTONIC nanoseconds (0 = none).
    request &with_deadline_at(uint64_t monotonic_ns) noexcept
    {
        deadline_ns = monotonic_ns;
        return *this;
    }
    // From now, as ioeng_deadline_in_ns(): saturating, so a duration too long for int64_t
    // nanoseconds (~292 years, seconds::max()) is UINT64_MAX, never; negative ones count
    // as 0.
    template <class Rep, class Period>
    request &with_deadline_in(std::chrono::duration<Rep, Period> d) noexcept
    {
        int64_t ns = detail::saturating_ns(d);
        deadline_ns =
            ns == INT64_MAX ? UINT64_MAX : detail::deadline_in_ns(static_cast<uint64_t>(ns));
        return *this;
    }
    request &with_class(uint16_t id) noexcept { class_id = id; return *this; }
};
static_assert(sizeof(request) == sizeof(ioeng_req_t) && std::is_standard_layout_v<request>,
              "ioeng_cpp::request must stay an ioeng_req_t");

inline request read(int fd, void *buf, uint64_t len, uint64_t offset) noexcept
{
    return detail::make_req(IOENG_OP_READ, fd, buf, len, offset);
}
inline request write(int fd, const void *buf, uint64_t len, uint64_t offset) noexcept
{
    return detail::make_req(IOENG_OP_WRITE, fd, buf, len, offset);
}
inline request readv(int fd, const struct iovec *iov, uint32_t iovcnt, uint64_t offset) noexcept
{
    return detail::make_req(IOENG_OP_READV, fd, iov, iovcnt, offset);
}
inline request writev(int fd, const struct iovec *iov, uint32_t iovcnt, uint64_t offset) noexcept
{
    return detail::make_req(IOENG_OP_WRITEV, fd, iov, iovcnt, offset);
}
inline request fsync(int fd) noexcept
{
    return detail::make_req(IOENG_OP_FSYNC, fd, nullptr, 0, 0);
}
inline request fdatasync(int fd) noexcept
{
    return detail::make_req(IOENG_OP_FDATASYNC, fd, nullptr, 0, 0);
}
// `mode` (FALLOC_FL_*) goes in buf_index.
inline request fallocate(int fd, uint32_t mode, uint64_t offset, uint64_t len) noexcept
{
    return detail::make_req(IOENG_OP_FALLOCATE, fd, nullptr, len, offset, mode);
}
// `flags` (SYNC_FILE_RANGE_*) go in buf_index, not in ioeng_req_t.flags.
inline request sync_file_range(int fd, uint64_t offset, uint64_t len, uint32_t flags) noexcept
{
    return detail::make_req(IOENG_OP_SYNC_FILE_RANGE, fd, nullptr, len, offset, flags);
}

// An ioeng_config_t holding ioeng_config_init()'s defaults, with chainable setters.
struct config : ioeng_config_t {
    config() noexcept : ioeng_config_t() { ioeng_config_init(this); }

    config &with_backend(ioeng_backend_t b) noexcept { backend = b; return *this; }
    config &with_depth(uint32_t d) noexcept { depth = d; return *this; }
    config &with_batch(uint32_t b) noexcept { batch = b; return *this; }
    config &with_queue_capacity(uint32_t c) noexcept { queue_capacity = c; return *this; }
    config &paused(bool p = true) noexcept { start_paused = p ? 1 : 0; return *this; }
    config &with_mode(ioeng_mode_t m) noexcept { mode = m; return *this; }
    config &polled() noexcept { return with_mode(IOENG_MODE_POLLED); }
    // IOENG_IDLE_POLL_DEFAULT, IOENG_IDLE_POLL_NEVER or µs (THREADS mode).
    config &with_idle_poll_us(uint32_t us) noexcept { idle_poll_us = us; return *this; }
    config &with_cpus(int32_t submitter, int32_t completer) noexcept
    {
        submitter_cpu = submitter;
        completer_cpu = completer;
        return *this;
    }
};
static_assert(sizeof(config) == sizeof(ioeng_config_t), "ioeng_cpp::config must stay an ioeng_config_t");

namespace detail {

// How many trampolines are running on this thread: engine calls made inside a callback
// do not throw a stored exception (it belongs to another callback, and would make this
// one's own follow-up fail or be swallowed by its catch); it waits for a call outside.
inline thread_local unsigned in_callback = 0;

struct callback_scope {
    callback_scope() noexcept { in_callback++; }
    ~callback_scope() { in_callback--; }
    callback_scope(const callback_scope &) = delete;
    callback_scope &operator=(const callback_scope &) = delete;
};

// Bumped in every child fork() makes (pthread_atfork): a state made before the fork sees a
// newer generation there. A pid cannot tell: the child of a process that is PID 1 of a
// namespace it unshared is PID 1 too.
inline std::atomic<unsigned long> fork_generation{0};

inline unsigned long fork_generation_now() noexcept
{
    // Once per program (or per shared object holding this code: glibc unregisters the
    // handler when it is unloaded).
    static const int registered = pthread_atfork(nullptr, nullptr, [] {
        fork_generation.fetch_add(1, std::memory_order_relaxed);
    });
    (void)registered;
    return fork_generation.load(std::memory_order_relaxed);
}

// Per engine, on the heap so a moved engine keeps the address its callables point to.
struct state {
    std::mutex lock;
    std::exception_ptr error; // under `lock`
    // error != nullptr, readable without the lock: the fast path of take().
    std::atomic<bool> has_error{false};
    std::atomic<size_t> dropped{0};
    // A forked child inherits this state, maybe with `lock` held by a parent thread that
    // does not exist there, and the parent's exception: it must take neither.
    const unsigned long generation = fork_generation_now();
    // The counter of the code that made this state: with hidden visibility (a library
    // or plugin built with -fvisibility=hidden) each shared object has its own copy of
    // fork_generation and its own handler, and only the maker's copy was registered; the
    // methods may be compiled into another object.
    const std::atomic<unsigned long> *const forks = &fork_generation;

    bool forked() const noexcept
    {
        return forks->load(std::memory_order_relaxed) != generation;
    }

    // Runs `body`, storing what it throws. Stored only after the catch ended: the
    // handler's own reference to the exception is gone by then, so the thread that
    // takes it (after this store, by the lock) holds the last one and frees it; a free
    // here, racing that thread's use, would be ordered only by libstdc++'s reference
    // count, which ThreadSanitizer cannot see (uninstrumented).
    template <class Body> void store_thrown(Body &&body) noexcept
    {
        std::exception_ptr thrown;
        try {
            body();
        } catch (...) {
            thrown = std::current_exception();
        }
        if (thrown)
            store(std::move(thrown));
    }

    void store(std::exception_ptr e) noexcept
    {
        std::lock_guard<std::mutex> g(lock);
        if (error) {
            dropped.fetch_add(1, std::memory_order_relaxed);
        } else {
            error = std::move(e);
            has_error.store(true, std::memory_order_release);
        }
    }
    std::exception_ptr take() noexcept
    {
        if (!has_error.load(std::memory_order_acquire) || forked())
            return nullptr;
        std::lock_guard<std::mutex> g(lock);
        has_error.store(false, std::memory_order_relaxed);
        return std::exchange(error, nullptr);
    }
    // What a closed engine's state `old` left: kept like one more callback exception.
    void absorb(state &old) noexcept
    {
        dropped.fetch_add(old.dropped.load(std::memory_order_relaxed), std::memory_order_relaxed);
        if (std::exception_ptr e = old.take())
            store(std::move(e));
    }
};

// Frees a state, except in a forked child, where its mutex may be locked for ever: there
// it leaks, like the parent's callables do.
inline void release(std::unique_ptr<state> &st) noexcept
{
    if (st && st->forked())
        (void)st.release();
    st.reset();
}

template <class F> struct single {
    F fn;
    state *st;

    static void trampoline(void *ctx, int64_t res) noexcept
    {
        std::unique_ptr<single> self(static_cast<single *>(ctx));
        callback_scope in_cb;
        self->st->store_thrown([&] { self->fn(res); });
    }
};

// One callable for a batch; each request's ctx is its slot. The submitter holds one
// reference until it knows how many requests were accepted.
template <class F> struct batch {
    struct slot {
        batch *owner;
        uint32_t index;
    };
    F fn;
    state *st;
    std::atomic<uint64_t> refs;
    std::unique_ptr<slot[]> slots;
    std::unique_ptr<void *[]> ctxs;

    batch(F &&f, state *s, uint32_t n)
        : fn(std::move(f)), st(s), refs(uint64_t{n} + 1), slots(new slot[n]), ctxs(new void *[n])
    {
        for (uint32_t i = 0; i < n; i++) {
            slots[i] = slot{this, i};
            ctxs[i] = &slots[i];
        }
    }
    void unref(uint64_t k) noexcept
    {
        if (refs.fetch_sub(k, std::memory_order_acq_rel) == k)
            delete this;
    }
    static void trampoline(void *ctx, int64_t res) noexcept
    {
        slot *s = static_cast<slot *>(ctx);
        batch *b = s->owner;
        {
            callback_scope in_cb;
            b->st->store_thrown([&] { b->fn(s->index, res); });
        }
        b->unref(1);
    }
};

} // namespace detail

class engine {
public:
    // No engine (valid() is false); assign an opened one to it.
    engine() noexcept = default;

    // ioeng_open(); throws std::system_error with its errno (e.g. EINVAL, EPERM).
    explicit engine(const ioeng_config_t &cfg) : state_(new detail::state)
    {
        int rc = ioeng_open(&cfg, &h_);
        if (rc != 0)
            throw std::system_error(-rc, std::generic_category(), "ioeng_open");
    }

    engine(const engine &) = delete;
    engine &operator=(const engine &) = delete;
    engine(engine &&o) noexcept : h_(std::exchange(o.h_, nullptr)), state_(std::move(o.state_)) {}
    // Closes this engine first, as close() does (see there for where that is refused). An
    // exception its callbacks left (also in close's drain) stays for rethrow(), as after
    // close(): it is kept if `o` holds none, else counted by dropped_exceptions(), which
    // also carries this engine's count over.
    engine &operator=(engine &&o) noexcept
    {
        if (this != &o) {
            close_or_terminate();
            std::unique_ptr<detail::state> old = std::move(state_);
            h_ = std::exchange(o.h_, nullptr);
            state_ = std::move(o.state_);
            if (!state_)
                state_ = std::move(old);
            else if (old && !old->forked() && !state_->forked())
                state_->absorb(*old); // no callback of the closed engine runs any more
            detail::release(old);
        }
        return *this;
    }
    // Closes the engine as close() does, and discards a stored exception. Like
    // ioeng_close(), it waits for every accepted request to complete, without limit: a
    // read pending on a pipe or socket that nobody writes to blocks it for ever (also
    // while an exception unwinds the stack). Call cancel_all() first where that can
    // happen; the destructor does not, so that writes still queued are not dropped.
    ~engine()
    {
        close_or_terminate();
        detail::release(state_);
    }

    // ioeng_close(): runs every pending callback, stops and frees the engine. Returns 0
    // (the engine is gone; valid() is false; again: 0), or -errno with the engine still
    // open (-EDEADLK: called from one of its callbacks, or on any thread of a THREADS
    // engine, this one or another; -EBUSY: POLLED engine being polled). Never throws; a
    // stored callback exception stays for rethrow(). Waits for pending requests without
    // limit, as the destructor does (see there).
    int close() noexcept
    {
        if (!h_)
            return 0;
        int rc = ioeng_close(h_);
        if (rc == 0)
            h_ = nullptr;
        return rc;
    }

    bool valid() const noexcept { return h_ != nullptr; }
    ioeng_t *native_handle() const noexcept { return h_; }

    // ioeng_submit() with a callable `void(int64_t res)`. 0: it runs exactly once (then
    // is destroyed); < 0 (-errno of ioeng_submit, -EINVAL without an engine): it never
    // runs and is destroyed here. Throws a stored callback exception first (see above),
    // or std::bad_alloc.
    template <class F> int submit(const ioeng_req_t &r, F &&fn)
    {
        rethrow_pending();
        using op = detail::single<std::decay_t<F>>;
        std::unique_ptr<op> p(new op{std::forward<F>(fn), state_.get()});
        int rc = ioeng_submit(h_, &r, &op::trampoline, p.get());
        if (rc == 0)
            p.release(); // the trampoline owns it now
        return rc;
    }

    // ioeng_submit_batch() of `n` requests sharing one callable `void(uint32_t i, int64_t
    // res)` (i = index in `reqs`). Returns how many were accepted (each gets exactly one
    // call), or the first request's -errno (-EINVAL without an engine or for n above
    // INT32_MAX, before anything is allocated). The callable is destroyed after the last
    // accepted request's call (or here, if none was accepted).
    template <class F> int submit_batch(const ioeng_req_t *reqs, uint32_t n, F &&fn)
    {
        rethrow_pending();
        // Refused before anything is allocated (24 bytes per request), as
        // ioeng_submit_batch() would refuse them.
        if (!h_ || n > INT32_MAX)
            return -EINVAL;
        if (n == 0)
            return ioeng_submit_batch(h_, reqs, 0, &noop, nullptr);
        using b = detail::batch<std::decay_t<F>>;
        std::decay_t<F> f(std::forward<F>(fn));
        b *state = new b(std::move(f), state_.get(), n);
        int rc = ioeng_submit_batch(h_, reqs, n, &b::trampoline, state->ctxs.get());
        uint64_t accepted = rc > 0 ? static_cast<uint64_t>(rc) : 0;
        state->unref(uint64_t{n} - accepted + 1); // the refused ones and the submitter's
        return rc;
    }

    // ioeng_submit_batch() with a plain C callback and const contexts: the one const_cast
    // of this header (see the top).
    int submit_batch_raw(const ioeng_req_t *reqs, uint32_t n, ioeng_cb_t cb,
                         const void *const *ctxs)
    {
        rethrow_pending();
        return ioeng_submit_batch(h_, reqs, n, cb, const_cast<void *const *>(ctxs));
    }

    int cancel(uint64_t tag)
    {
        rethrow_pending();
        return ioeng_cancel(h_, tag);
    }

    // ioeng_cancel_all(): every accepted request, tagged or not; the count, or -errno.
    int cancel_all()
    {
        rethrow_pending();
        return ioeng_cancel_all(h_);
    }

    int resume()
    {
        rethrow_pending();
        return ioeng_resume(h_);
    }

    int register_buffers(const struct iovec *iov, uint32_t n)
    {
        rethrow_pending();
        return ioeng_register_buffers(h_, iov, n);
    }

    int register_files(const int *fds, uint32_t n)
    {
        rethrow_pending();
        return ioeng_register_files(h_, fds, n);
    }

    // ioeng_poll() (POLLED mode): the number of callbacks run, or -errno. Throws a stored
    // callback exception when it starts and, for callbacks it ran, when it returns.
    int poll(uint32_t min_complete, int64_t timeout_ns)
    {
        rethrow_pending();
        int rc = ioeng_poll(h_, min_complete, timeout_ns);
        rethrow_pending();
        return rc;
    }
    // Negative durations count as 0 (do not wait); one too long for int64_t nanoseconds
    // (seconds::max()) saturates to INT64_MAX, ~292 years.
    template <class Rep, class Period>
    int poll(uint32_t min_complete, std::chrono::duration<Rep, Period> timeout)
    {
        return poll(min_complete, detail::saturating_ns(timeout));
    }

    // Throws the stored callback exception, if any (and clears it). Also inside a
    // callback, where only this explicit call throws it. Never in a forked child: the
    // exception is the parent's.
    void rethrow()
    {
        if (!state_)
            return;
        if (std::exception_ptr e = state_->take())
            std::rethrow_exception(e);
    }
    // Callback exceptions dropped because an earlier one had not been rethrown yet.
    size_t dropped_exceptions() const noexcept
    {
        return state_ ? state_->dropped.load(std::memory_order_relaxed) : 0;
    }

    int event_fd() const noexcept { return ioeng_event_fd(h_); }
    // ioeng_next_timeout_ns() (POLLED mode): 0 when the event fd is readable, else ns to the
    // earliest timer, -1 if none, -errno on error.
    int64_t next_timeout_ns() const noexcept { return ioeng_next_timeout_ns(h_); }
    int stats(ioeng_stats_t &out) const noexcept { return ioeng_stats(h_, &out); }
    ioeng_backend_t backend() const noexcept { return ioeng_backend(h_); }
    const char *backend_name() const noexcept { return ioeng_backend_name(h_); }

private:
    static void noop(void *, int64_t) noexcept {}

    // The check every method makes on entry, skipped inside a callback (see the top).
    void rethrow_pending()
    {
        if (detail::in_callback == 0)
            rethrow();
    }

    void close_or_terminate() noexcept
    {
        int rc = close();
        if (rc != 0) {
            // Freeing the state now would leave running callbacks a dangling pointer.
            std::fprintf(stderr, "ioeng_cpp::engine destroyed while it cannot close: %s\n",
                         std::strerror(-rc));
            std::terminate();
        }
    }

    ioeng_t *h_ = nullptr;
    std::unique_ptr<detail::state> state_;
};

} // namespace ioeng_cpp

#endif // IOENG_HPP
