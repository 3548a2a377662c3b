// RequestExecutor: a request's task runs on the libfuse thread that received the request, for
// as long as that thread has something of it to run.
//
// Handing every request to Swift's global pool wakes a pool thread for it (and puts one to
// sleep after): on this kind of VM a wake-up costs about as much as the FUSE round trip itself,
// and a `cp` of small files makes seven requests per file. The request's task prefers this
// executor (SE-0417), so its code — and the filesystem actor's, which runs on the preferred
// executor of the task that calls it — runs right here; a job that comes back from another
// thread (an I/O thread resuming it) wakes this thread, not a pool thread. When the task has
// had nothing to run for `idle` (it waits for a server), the thread detaches and goes back to
// reading requests: what follows runs on the global pool, as before.

#if canImport(Glibc)
    import Glibc
#endif

final class RequestExecutor: TaskExecutor, @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let condition: UnsafeMutablePointer<pthread_cond_t>
    // Guarded by `mutex`.
    private var jobs: [UnownedJob] = []
    private var attached = true
    private var finished = false

    init() {
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pthread_mutex_lock(mutex)
        if attached {
            jobs.append(job)
            pthread_cond_signal(condition)
            pthread_mutex_unlock(mutex)
            return
        }
        pthread_mutex_unlock(mutex)
        globalConcurrentExecutor.enqueue(ExecutorJob(job))
    }

    /// The task is done (its reply sent): `serve` returns without waiting out `idle`.
    func finish() {
        pthread_mutex_lock(mutex)
        finished = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Runs the task's jobs on the calling thread until it finishes or has had nothing to run
    /// for `idle` nanoseconds; jobs enqueued after that go to the global pool.
    func serve(idle: Int) {
        while true {
            pthread_mutex_lock(mutex)
            if jobs.isEmpty && !finished {
                var deadline = timespec()
                clock_gettime(CLOCK_MONOTONIC, &deadline)
                let nanoseconds = Int(deadline.tv_nsec) + idle
                deadline.tv_sec += nanoseconds / 1_000_000_000
                deadline.tv_nsec = nanoseconds % 1_000_000_000
                while jobs.isEmpty && !finished {
                    if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
                }
            }
            if jobs.isEmpty {
                attached = false
                pthread_mutex_unlock(mutex)
                return
            }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            pthread_mutex_unlock(mutex)
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }
}
