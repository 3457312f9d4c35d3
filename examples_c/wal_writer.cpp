// wal_writer.cpp - the README's "First hour": a write-ahead-log writer with group commit,
// HIGH-priority point reads, deadlines for reads whose query timed out, and a prefetch
// batch cancelled when the scan is abandoned. C++17 over <ioeng.hpp>.
//
//   wal_writer [--backend aio|uring] [--polled] [DIR]     (DIR default /tmp)
//
// Build (installed libioeng): g++ -std=c++17 wal_writer.cpp $(pkg-config --cflags --libs ioeng)
// pkg/tests/run.sh builds it from the installed tree and runs it on every backend x mode.
// It checks what it demonstrates and exits 1 if anything is off.
#include <ioeng.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;

// Waits for a condition the callbacks make true, or for a callback's exception.
// THREADS mode: callbacks run on the engine's thread, so sleep on a condition variable,
// and call rethrow() at every wake-up: a callback that threw (a failed WAL write) may
// never make `done` true nor notify, and its exception reaches this thread only through
// an engine call. POLLED mode: this thread runs them, inside poll(), which throws it.
class Driver {
public:
    Driver(ioeng_cpp::engine &eng, bool polled) : eng_(eng), polled_(polled) {}
    void notify()
    {
        std::lock_guard<std::mutex> g(mu_);
        cv_.notify_all();
    }
    void wait(const std::function<bool()> &done)
    {
        try {
            wait_loop(done);
        } catch (...) {
            // Close (drain) the engine before the exception unwinds run(): the callbacks
            // still pending use buffers and objects of run() that unwinding destroys.
            (void)eng_.close();
            throw;
        }
    }

private:
    void wait_loop(const std::function<bool()> &done)
    {
        std::unique_lock<std::mutex> g(mu_);
        while (!done()) {
            if (polled_) {
                g.unlock();
                (void)eng_.poll(1, 10ms);
                g.lock();
            } else {
                cv_.wait_for(g, 10ms);
                eng_.rethrow();
            }
        }
    }

    ioeng_cpp::engine &eng_;
    bool polled_;
    std::mutex mu_;
    std::condition_variable cv_;
};

// Group commit: appends collect in `pending_`; commit() writes them all with one WRITEV at
// the log's tail with IOENG_REQ_DSYNC (durable when the callback runs) while the next group
// collects. One commit in flight at a time, so the tail only grows.
class Wal {
public:
    Wal(ioeng_cpp::engine &eng, Driver &drv, int fd) : eng_(eng), drv_(drv), fd_(fd) {}

    void append(std::string record, std::function<void()> on_durable)
    {
        std::lock_guard<std::mutex> g(mu_);
        pending_.push_back({std::move(record), std::move(on_durable)});
    }

    // Starts a commit of everything appended so far, unless one is in flight.
    void commit()
    {
        std::lock_guard<std::mutex> g(mu_);
        if (in_flight_ || pending_.empty())
            return;
        auto group = std::make_shared<std::vector<Entry>>(std::move(pending_));
        pending_.clear();
        auto iov = std::make_shared<std::vector<struct iovec>>();
        uint64_t bytes = 0;
        for (auto &e : *group) {
            iov->push_back({e.record.data(), e.record.size()});
            bytes += e.record.size();
        }
        uint64_t at = tail_;
        tail_ += bytes;
        in_flight_ = true;
        // The lambda owns the records and the iovec array until the write completed.
        auto req = ioeng_cpp::writev(fd_, iov->data(), static_cast<uint32_t>(iov->size()), at)
                       .with_flags(IOENG_REQ_DSYNC);
        int rc = eng_.submit(req, [this, group, iov, bytes](int64_t res) {
            // Thrown here, it comes out of the next engine call on the waiting thread
            // (Driver::wait); the log stays stuck at this group, so no commit follows.
            if (res != static_cast<int64_t>(bytes))
                throw std::system_error(res < 0 ? static_cast<int>(-res) : EIO,
                                        std::generic_category(), "WAL write");
            for (auto &e : *group)
                e.on_durable();
            {
                std::lock_guard<std::mutex> g(mu_);
                in_flight_ = false;
                groups_++;
            }
            commit(); // the next group, collected meanwhile
            drv_.notify();
        });
        if (rc != 0)
            throw std::system_error(-rc, std::generic_category(), "submit WAL write");
    }

    uint64_t tail()
    {
        std::lock_guard<std::mutex> g(mu_);
        return tail_;
    }
    unsigned groups()
    {
        std::lock_guard<std::mutex> g(mu_);
        return groups_;
    }

private:
    struct Entry {
        std::string record;
        std::function<void()> on_durable;
    };
    ioeng_cpp::engine &eng_;
    Driver &drv_;
    int fd_;
    std::mutex mu_;
    std::vector<Entry> pending_;
    uint64_t tail_ = 0;
    bool in_flight_ = false;
    unsigned groups_ = 0;
};

int scratch_file(const std::string &dir, const char *name)
{
    std::string path = dir + "/ioeng-wal-" + name + "-XXXXXX";
    std::vector<char> p(path.begin(), path.end());
    p.push_back('\0');
    int fd = mkstemp(p.data());
    if (fd < 0)
        throw std::system_error(errno, std::generic_category(), "mkstemp " + path);
    unlink(p.data());
    return fd;
}

int run(ioeng_backend_t backend, bool polled, const std::string &dir)
{
    ioeng_cpp::engine eng(ioeng_cpp::config()
                              .with_backend(backend)
                              .with_mode(polled ? IOENG_MODE_POLLED : IOENG_MODE_THREADS)
                              .with_depth(8));
    Driver drv(eng, polled);
    int bad = 0;

    // 1. Group commit: 200 records appended by 4 threads, committed in groups.
    int log_fd = scratch_file(dir, "log");
    Wal wal(eng, drv, log_fd);
    std::atomic<unsigned> durable{0};
    std::vector<std::thread> writers;
    for (int t = 0; t < 4; t++)
        writers.emplace_back([&, t] {
            for (int i = 0; i < 50; i++) {
                wal.append("txn " + std::to_string(t) + "." + std::to_string(i) + ";", [&] {
                    durable++;
                });
                if (i % 8 == 7)
                    wal.commit();
            }
        });
    for (auto &w : writers)
        w.join();
    wal.commit();
    drv.wait([&] { return durable.load() == 200; });
    std::vector<char> log(wal.tail());
    if (pread(log_fd, log.data(), log.size(), 0) != static_cast<ssize_t>(log.size()))
        bad++;
    unsigned records = 0;
    for (char c : log)
        records += c == ';';
    if (records != 200)
        bad++;

    // 2. Point reads at HIGH priority: they pass queued NORMAL work (the scheduler
    //    dispatches HIGH first).
    int data_fd = scratch_file(dir, "data");
    std::vector<char> page(4096, 'p');
    for (int i = 0; i < 16; i++)
        if (pwrite(data_fd, page.data(), page.size(), i * 4096) != 4096)
            bad++;
    std::atomic<int> point_ok{0}, expired{0}, point_done{0};
    std::vector<std::vector<char>> bufs(8, std::vector<char>(4096));
    for (int i = 0; i < 4; i++) {
        int rc = eng.submit(ioeng_cpp::read(data_fd, bufs[i].data(), 4096, i * 4096).high(),
                            [&](int64_t res) {
                                point_ok += res == 4096;
                                point_done++;
                                drv.notify();
                            });
        bad += rc != 0;
    }

    // 3. A query with a 2 ms budget that spent it elsewhere before reading: the deadline
    //    was taken when the query started, so its reads complete with -ETIMEDOUT instead
    //    of costing IO for an answer nobody waits for.
    uint64_t query_deadline = ioeng_deadline_in_ns(2'000'000);
    std::this_thread::sleep_for(5ms); // planning, locks, ...
    for (int i = 4; i < 8; i++) {
        int rc = eng.submit(ioeng_cpp::read(data_fd, bufs[i].data(), 4096, i * 4096)
                                .high()
                                .with_deadline_at(query_deadline),
                            [&](int64_t res) {
                                expired += res == -ETIMEDOUT;
                                point_done++;
                                drv.notify();
                            });
        bad += rc != 0;
    }
    drv.wait([&] { return point_done.load() == 8; });
    if (point_ok.load() != 4 || expired.load() != 4)
        bad++;

    // 4. A prefetch batch for a scan, tagged; the scan is abandoned, so cancel the tag.
    //    Every request still gets one callback: -ECANCELED if it had not run yet.
    constexpr uint64_t kScanTag = 77;
    std::vector<ioeng_req_t> prefetch;
    std::vector<std::vector<char>> pbufs(64, std::vector<char>(4096));
    for (int i = 0; i < 64; i++)
        prefetch.push_back(
            ioeng_cpp::read(data_fd, pbufs[i].data(), 4096, (i % 16) * 4096).with_tag(kScanTag));
    std::atomic<int> fetched{0}, cancelled{0}, prefetch_done{0};
    int accepted = eng.submit_batch(prefetch.data(), 64, [&](uint32_t, int64_t res) {
        fetched += res == 4096;
        cancelled += res == -ECANCELED;
        prefetch_done++;
        drv.notify();
    });
    int asked = eng.cancel(kScanTag);
    drv.wait([&] { return prefetch_done.load() == accepted; });
    if (accepted != 64 || asked < 0 || fetched.load() + cancelled.load() != 64)
        bad++;

    std::printf("wal_writer [%s %s]: 200 records durable in %u group commits (%llu bytes); "
                "4 HIGH point reads ok, 4 expired reads -ETIMEDOUT; prefetch of 64: %d "
                "read, %d cancelled\n",
                eng.backend_name(), polled ? "polled" : "threads", wal.groups(),
                static_cast<unsigned long long>(wal.tail()), fetched.load(), cancelled.load());
    if (int rc = eng.close(); rc != 0)
        bad++;
    eng.rethrow(); // a WAL write that failed threw in its callback: it surfaces here
    close(log_fd);
    close(data_fd);
    return bad ? 1 : 0;
}

} // namespace

int main(int argc, char **argv)
{
    ioeng_backend_t backend = IOENG_BACKEND_AUTO;
    bool polled = false;
    std::string dir = "/tmp";
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "--backend" && i + 1 < argc) {
            std::string b = argv[++i];
            backend = b == "aio" ? IOENG_BACKEND_AIO : b == "uring" ? IOENG_BACKEND_URING
                                                                    : IOENG_BACKEND_AUTO;
        } else if (a == "--polled") {
            polled = true;
        } else {
            dir = a;
        }
    }
    try {
        int rc = run(backend, polled, dir);
        if (rc)
            std::fprintf(stderr, "wal_writer: FAILED\n");
        return rc;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "wal_writer: %s\n", e.what());
        return 1;
    }
}
