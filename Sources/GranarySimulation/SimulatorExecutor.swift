import Glibc

/// The simulator's scheduler for the shipped replica's async code: a serial executor (the
/// stores' actors run on it) and a task executor (the tasks it starts prefer it) whose jobs
/// run only when the simulator drains it, on the simulator's thread, in the order they were
/// enqueued. So one seed gives one interleaving, as on a core's reactor, where the same
/// code runs. The faulty disk never suspends, so a drained operation is a finished one.
final class SimulatorExecutor: SerialExecutor, TaskExecutor, @unchecked Sendable {
    // @unchecked: jobs are enqueued and run on the owner thread only (checked).
    private var jobs: [UnownedJob] = []
    private var next = 0
    private let owner = pthread_self()

    func enqueue(_ job: consuming ExecutorJob) {
        precondition(pthread_equal(owner, pthread_self()) != 0, "the simulator's jobs stay on its thread")
        jobs.append(UnownedJob(job))
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor { UnownedSerialExecutor(ordinary: self) }

    /// Runs jobs, those they enqueue included, until none is left.
    func drain() {
        while next < jobs.count {
            let job = jobs[next]
            next += 1
            job.runSynchronously(isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
            if next == jobs.count {
                jobs.removeAll(keepingCapacity: true)
                next = 0
            }
        }
    }

    /// Runs `body` to its end now: as a task on this executor, drained.
    func run<T>(_ body: sending @escaping () async -> T) -> T {
        let result = Box<T?>(nil)
        Task(executorPreference: self) { result.value = await body() }
        drain()
        guard let value = result.value else {
            preconditionFailure("a simulated operation waits for something that never comes")
        }
        return value
    }
}
