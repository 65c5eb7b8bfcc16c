import Atomics
import CShims
import DequeModule
import Glibc

/// One core's event loop: a thread, its io_uring, and everything that runs on it.
///
/// A reactor is created on the thread it will own (see `ReactorGroup`), and from then on
/// only that thread touches its ring, its operation table and its ready queue. Other
/// threads reach it in two ways only: `tryPost`, a bounded cross-core message, and the
/// Swift runtime's `enqueue` of a job whose executor this is.
///
/// Two styles of code run here, and both resume on this same core after an I/O:
/// completion callbacks (`submit(_:prepare:)`), and async functions running on a task
/// whose executor preference is this reactor, or in an actor whose executor it is
/// (`read(...)`, `recv(...)` and friends suspend the task and the completion resumes it
/// here). BENCHMARKS.md measures the cost of each.
///
/// One loop turn: run the jobs and callbacks that were ready at its start, take the
/// inbox, then make at most one `io_uring_enter` that both submits every prepared
/// operation and, if nothing else is ready, waits for a completion; then copy the
/// completions out and dispatch them.
public final class Reactor: @unchecked Sendable {
    // @unchecked: everything below `owner-thread state` is touched only by the owning
    // thread (checked by `preconditionOwner()`); the cross-thread state is an atomic, a
    // lock-free queue, a mutex and an eventfd, each safe by itself.

    /// This reactor's index in its group (0..<cores).
    public let index: Int
    /// The CPU the thread is pinned to, or nil when unpinned.
    public let cpu: Int?

    // Cross-thread state.
    private let inbox = BoundedMPSCQueue<@Sendable () -> Void>(capacity: IOLimits.inboxCapacity)
    private let foreignJobs = Locked<Deque<UnownedJob>>([])
    private let sleeping = ManagedAtomic<Bool>(false)
    private let stopRequested = ManagedAtomic<Bool>(false)
    private let wakeDescriptor: Int32

    // Owner-thread state.
    var ring: io_uring
    /// The kernel raises IORING_SQ_TASKRUN when completions wait for this thread to enter
    /// it (COOP_TASKRUN defers them), so a polling loop need not enter to find out.
    private let hasTaskRunFlag: Bool
    var operations: OperationTable
    private var readyJobs: Deque<UnownedJob> = []
    private var readyCallbacks: Deque<() -> Void> = []
    private let completionBuffer: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>
    private let wakeBuffer: UnsafeMutablePointer<UInt64>
    private var wakeArmed = false
    /// File requests prepared since the last `io_uring_enter` (see
    /// `IOLimits.fileSubmissionBatchMax`).
    private var pendingFileSubmissions = 0
    /// When this loop last ran work or reaped a completion (CLOCK_MONOTONIC, ns).
    private var lastProgressNanoseconds: UInt64 = 0
    /// Whether an idle loop polls for a while before it sleeps (IOLimits): yes for a
    /// server's cores; no for a load generator sharing the machine with the server it
    /// measures, whose polling took CPU from it (BENCHMARKS.md, "Open loop").
    public let pollsWhenIdle: Bool
    /// The number of `io_uring_enter` calls, for tests and benchmarks of batching.
    public private(set) var kernelEntries = 0
    /// When this loop last slept in the kernel or gave its CPU away (CLOCK_MONOTONIC, ns).
    private var lastRestNanoseconds: UInt64 = 0
    /// The number of times this loop gave its CPU away after running too long without
    /// sleeping (`IOLimits.runBeforeYieldNanoseconds`), for tests.
    public private(set) var yields = 0

    static let wakeUserData: UInt64 = .max
    static let ignoredUserData: UInt64 = .max - 1

    /// Creates a reactor owned by the calling thread. Call it on the thread that will run
    /// `run()`: the ring is created with IORING_SETUP_SINGLE_ISSUER where the kernel has it.
    public init(index: Int, cpu: Int?, pollsWhenIdle: Bool = true) throws(Errno) {
        self.index = index
        self.cpu = cpu
        self.pollsWhenIdle = pollsWhenIdle
        lastRestNanoseconds = monotonicNanoseconds()
        (ring, hasTaskRunFlag) = try IOUringSupport.makeRing()
        operations = OperationTable(capacity: IOLimits.operationsInFlightMax)
        completionBuffer = .allocate(capacity: IOLimits.completionBatchMax)
        wakeBuffer = .allocate(capacity: 1)
        do {
            wakeDescriptor = try systemCall("eventfd") { eventfd(0, Int32(EFD_CLOEXEC)) }
        } catch {
            io_uring_queue_exit(&ring)
            throw error
        }
        precondition(granary_current_reactor() == nil, "a thread owns at most one reactor")
        granary_set_current_reactor(Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        io_uring_queue_exit(&ring)
        Glibc.close(wakeDescriptor)
        completionBuffer.deallocate()
        wakeBuffer.deallocate()
    }

    /// The reactor that owns the calling thread, if any.
    public static var current: Reactor? {
        guard let pointer = granary_current_reactor() else { return nil }
        return Unmanaged<Reactor>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// Whether the calling thread is this reactor's.
    public var isOwnerThread: Bool {
        granary_current_reactor() == Unmanaged.passUnretained(self).toOpaque()
    }

    @inline(__always)
    func preconditionOwner() {
        precondition(isOwnerThread, "reactor state touched from a thread that does not own it")
    }

    // MARK: Cross-core messages

    /// Runs `message` on this reactor's thread, soon. Safe from any thread. Returns false,
    /// and runs nothing, when the inbox is full: the sender must back off and retry later.
    @discardableResult
    public func tryPost(_ message: @escaping @Sendable () -> Void) -> Bool {
        guard inbox.tryPush(message) else { return false }
        wakeIfSleeping()
        return true
    }

    /// Defers `body` to the next turn of this reactor's loop. Owner thread only.
    public func deferToNextTurn(_ body: @escaping () -> Void) {
        preconditionOwner()
        readyCallbacks.append(body)
    }

    /// Asks the loop to stop: it cancels what is in flight, lets it complete, and returns.
    public func stop() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        wakeIfSleeping()
    }

    private func wakeIfSleeping() {
        // Pairs with the store-then-check in `enterKernel`: either the loop sees our
        // message before it sleeps, or we see it asleep and wake it.
        if sleeping.load(ordering: .sequentiallyConsistent),
            sleeping.exchange(false, ordering: .sequentiallyConsistent)
        {
            var one: UInt64 = 1
            _ = Glibc.write(wakeDescriptor, &one, 8)
        }
    }

    // MARK: Submitting operations

    /// Starts one io_uring operation: `prepare` fills the submission queue entry (and may
    /// use the slot's scratch memory), and `handler` runs on this thread with its
    /// completion. Owner thread only. When every slot is in flight, the handler gets EBUSY
    /// on the next turn and nothing is submitted.
    /// `isFileIO` marks a request on a file (read, write, sync), which is flushed in small
    /// batches rather than once per turn (`IOLimits.fileSubmissionBatchMax` says why).
    @discardableResult
    public func submit(
        isFileIO: Bool = false,
        _ handler: @escaping (Completion) -> Void,
        prepare: (UnsafeMutablePointer<io_uring_sqe>, UnsafeMutableRawPointer) -> Void
    ) -> OperationID? {
        preconditionOwner()
        guard let (id, _) = start(.callback(handler), isFileIO: isFileIO, prepare) else {
            readyCallbacks.append { handler(Completion(result: -EBUSY, flags: 0)) }
            return nil
        }
        return id
    }

    /// Takes a slot for `handler` and prepares its submission entry; nil when every slot is
    /// in flight (the caller answers EBUSY).
    private func start(
        _ handler: CompletionHandler, isFileIO: Bool, runsOnWorker: Bool = false,
        _ prepare: (UnsafeMutablePointer<io_uring_sqe>, UnsafeMutableRawPointer) -> Void
    ) -> (OperationID, UnsafeMutablePointer<io_uring_sqe>)? {
        guard let id = operations.acquire(handler, onDevice: isFileIO && !runsOnWorker) else { return nil }
        let sqe = nextSubmissionEntry()
        prepare(sqe, operations.scratch(for: id))
        io_uring_sqe_set_data64(sqe, id.userData)
        if isFileIO { countFileSubmission() }
        return (id, sqe)
    }

    /// Starts one io_uring operation and suspends the calling task until it completes.
    /// The task must be running on this reactor (executor preference or actor executor),
    /// so it resumes here. `runsOnWorker` marks a file request the kernel hands to an
    /// io-wq thread (a sync, an allocation): the reactor does not poll for it, since that
    /// thread shares this core and a polling loop would hold it off.
    public func perform(
        isFileIO: Bool = false, runsOnWorker: Bool = false,
        _ prepare: (UnsafeMutablePointer<io_uring_sqe>, UnsafeMutableRawPointer) -> Void
    ) async -> Completion {
        preconditionOwner()
        return await withUnsafeContinuation { continuation in
            if start(.continuation(continuation), isFileIO: isFileIO, runsOnWorker: runsOnWorker, prepare) == nil {
                continuation.resume(returning: Completion(result: -EBUSY, flags: 0))
            }
        }
    }

    private func countFileSubmission() {
        pendingFileSubmissions += 1
        if pendingFileSubmissions >= IOLimits.fileSubmissionBatchMax { flushSubmissions() }
    }

    /// Hands every prepared request to the kernel now, without waiting.
    private func flushSubmissions() {
        let submitted = io_uring_submit(&ring)
        kernelEntries += 1
        pendingFileSubmissions = 0
        precondition(
            submitted >= 0 || submitted == -EINTR || submitted == -EAGAIN || submitted == -EBUSY,
            "io_uring_submit failed: \(Errno(result: submitted))")
    }

    /// Like `perform`, with a timeout linked to the operation (IORING_OP_LINK_TIMEOUT):
    /// if it has not completed after `timeout`, the kernel cancels it and it completes
    /// with ECANCELED.
    public func perform(
        timeout: Duration,
        _ prepare: (UnsafeMutablePointer<io_uring_sqe>, UnsafeMutableRawPointer) -> Void
    ) async -> Completion {
        preconditionOwner()
        return await withUnsafeContinuation { continuation in
            guard let (id, sqe) = start(.continuation(continuation), isFileIO: false, prepare) else {
                continuation.resume(returning: Completion(result: -EBUSY, flags: 0))
                return
            }
            let scratch = operations.scratch(for: id)
            sqe.pointee.flags |= granary_IOSQE_IO_LINK
            // The timespec lives in the slot's last 16 bytes, away from what `prepare` uses.
            let timespec = (scratch + OperationTable.scratchBytes - 16)
                .bindMemory(to: __kernel_timespec.self, capacity: 1)
            timespec.pointee = __kernel_timespec(duration: timeout)
            let timeoutEntry = nextSubmissionEntry()
            io_uring_prep_link_timeout(timeoutEntry, timespec, 0)
            io_uring_sqe_set_data64(timeoutEntry, Self.ignoredUserData)
        }
    }

    /// Asks the kernel to cancel an operation in flight; it completes with ECANCELED (or
    /// with its own result, if it won the race). A finished operation's id is ignored.
    public func cancel(_ id: OperationID) {
        preconditionOwner()
        guard operations.contains(id) else { return }
        let sqe = nextSubmissionEntry()
        io_uring_prep_cancel64(sqe, id.userData, 0)
        io_uring_sqe_set_data64(sqe, Self.ignoredUserData)
    }

    /// A free submission queue entry. A full queue is flushed once (the one extra
    /// `io_uring_enter` a burst larger than the queue costs).
    func nextSubmissionEntry() -> UnsafeMutablePointer<io_uring_sqe> {
        if let sqe = io_uring_get_sqe(&ring) { return sqe }
        flushSubmissions()
        guard let sqe = io_uring_get_sqe(&ring) else {
            preconditionFailure("the submission queue is full right after a flush")
        }
        return sqe
    }

    // MARK: The loop

    /// Runs the loop on the calling (owner) thread until `stop()`.
    public func run() {
        preconditionOwner()
        while !stopRequested.load(ordering: .relaxed) {
            turn()
        }
        drainForShutdown()
    }

    /// One turn of the loop. Public for tests that drive a reactor by hand.
    public func turn() {
        let ranWork = runReadyWork()
        armWakeRead()
        let now = monotonicNanoseconds()
        if ranWork { lastProgressNanoseconds = now }
        let idle = readyJobs.isEmpty && readyCallbacks.isEmpty
        // Soon after progress, poll instead of sleeping: a completion or a peer core's
        // reply is likely within microseconds, and a wake-up costs more than that. With
        // reads or writes at the device, poll for as long as the disk takes to answer.
        let window =
            operations.deviceOperationsInFlight > 0
            ? IOLimits.pollForFilesNanoseconds : IOLimits.pollBeforeSleepNanoseconds
        let polling = pollsWhenIdle && now &- lastProgressNanoseconds < window
        if enterKernel(wait: idle && !polling) {
            lastRestNanoseconds = monotonicNanoseconds()
        } else if now &- lastRestNanoseconds > IOLimits.runBeforeYieldNanoseconds {
            // Busy or polling this long without sleeping: let whatever else waits for this
            // CPU run now (a client beside us, the io-wq thread with our fdatasync), rather
            // than at the end of our scheduler slice, which a 250 Hz tick ends late.
            sched_yield()
            yields += 1
            lastRestNanoseconds = monotonicNanoseconds()
        }
        if reapCompletions() > 0 { lastProgressNanoseconds = now }
    }

    /// Runs what was ready at the start of the turn; returns whether anything ran.
    @discardableResult
    private func runReadyWork() -> Bool {
        // Take the inbox and foreign jobs first, so they run this turn.
        while let message = inbox.pop() { readyCallbacks.append(message) }
        foreignJobs.withLock { jobs in
            readyJobs.append(contentsOf: jobs)
            jobs.removeAll(keepingCapacity: true)
        }
        // Only what was ready at the start of the turn runs now; what it makes ready runs
        // next turn, after its I/O has been submitted.
        let serial = asUnownedSerialExecutor()
        let task = asUnownedTaskExecutor()
        let ran = !readyCallbacks.isEmpty || !readyJobs.isEmpty
        for _ in 0..<readyCallbacks.count {
            readyCallbacks.removeFirst()()
        }
        for _ in 0..<readyJobs.count {
            readyJobs.removeFirst().runSynchronously(isolatedTo: serial, taskExecutor: task)
        }
        return ran
    }

    private func armWakeRead() {
        guard !wakeArmed else { return }
        let sqe = nextSubmissionEntry()
        io_uring_prep_read(sqe, wakeDescriptor, wakeBuffer, 8, 0)
        io_uring_sqe_set_data64(sqe, Self.wakeUserData)
        wakeArmed = true
    }

    /// Submits what is prepared and takes what the kernel holds; sleeps for a completion
    /// when `wait` and nothing arrived meanwhile. Returns whether it slept (or could have).
    @discardableResult
    private func enterKernel(wait: Bool) -> Bool {
        var mayWait = wait
        if mayWait {
            sleeping.store(true, ordering: .sequentiallyConsistent)
            if !inbox.isEmpty || stopRequested.load(ordering: .sequentiallyConsistent)
                || foreignJobs.withLock({ !$0.isEmpty })
            {
                mayWait = false
            }
        }
        let pending = io_uring_sq_ready(&ring)
        var result: Int32 = 0
        if mayWait {
            result = io_uring_submit_and_wait(&ring, 1)
            kernelEntries += 1
        } else if pending > 0 || (io_uring_cq_ready(&ring) == 0 && kernelHoldsCompletions) {
            // Submit, and let the kernel post what has completed (COOP_TASKRUN defers it
            // to our next entry), without waiting.
            result = io_uring_submit_and_get_events(&ring)
            kernelEntries += 1
        }
        sleeping.store(false, ordering: .relaxed)
        pendingFileSubmissions = 0
        // EINTR (a signal), EAGAIN and EBUSY (completion queue backlog) clear up by
        // reaping; anything else is a bug in what we submitted.
        precondition(
            result >= 0 || result == -EINTR || result == -EAGAIN || result == -EBUSY,
            "io_uring_enter failed: \(Errno(result: result))")
        return mayWait
    }

    /// Whether entering the kernel would post completions. Without the flag, assume so.
    /// While polling, a loop that entered on every turn made seven system calls per
    /// 8 KiB page read at depth 32 (perf stat; fio makes one).
    private var kernelHoldsCompletions: Bool {
        guard hasTaskRunFlag else { return true }
        return ring.sq.kflags.pointee & (granary_IORING_SQ_TASKRUN | granary_IORING_SQ_CQ_OVERFLOW) != 0
    }

    /// Copies completions out of the ring and dispatches them; returns how many.
    @discardableResult
    private func reapCompletions() -> Int {
        var total = 0
        while true {
            let count = Int(io_uring_peek_batch_cqe(&ring, completionBuffer, UInt32(IOLimits.completionBatchMax)))
            total += count
            if count == 0 { return total }
            for position in 0..<count {
                let cqe = completionBuffer[position]!.pointee
                dispatch(userData: cqe.user_data, Completion(result: cqe.res, flags: cqe.flags))
            }
            io_uring_cq_advance(&ring, UInt32(count))
            if count < IOLimits.completionBatchMax { return total }
        }
    }

    private func dispatch(userData: UInt64, _ completion: Completion) {
        switch userData {
        case Self.wakeUserData:
            wakeArmed = false
        case Self.ignoredUserData:
            break
        default:
            // Handlers run after the drain (on the ready queues), never inside it.
            switch operations.handler(for: OperationID(userData: userData), keep: completion.hasMore) {
            case .callback(let handler):
                readyCallbacks.append { handler(completion) }
            case .continuation(let continuation):
                // Resuming enqueues the task's job on this executor: `readyJobs`.
                continuation.resume(returning: completion)
            }
        }
    }

    /// Cancels every operation in flight and turns the loop until they have completed, so
    /// no buffer is still lent to the kernel when the ring goes away. Bounded: ten
    /// seconds at most (a disk operation cannot always be cancelled, but it finishes).
    private func drainForShutdown() {
        let deadline = ContinuousClock.now + .seconds(10)
        var pause = __kernel_timespec(duration: .milliseconds(50))
        while ContinuousClock.now < deadline {
            runReadyWork()
            if operations.inFlightCount == 0 && readyJobs.isEmpty && readyCallbacks.isEmpty { return }
            let sqe = nextSubmissionEntry()
            io_uring_prep_cancel64(sqe, 0, Int32(IORING_ASYNC_CANCEL_ANY))
            io_uring_sqe_set_data64(sqe, Self.ignoredUserData)
            var first: UnsafeMutablePointer<io_uring_cqe>? = nil
            _ = io_uring_submit_and_wait_timeout(&ring, &first, 1, &pause, nil)
            kernelEntries += 1
            reapCompletions()
        }
    }
}

extension Reactor: SerialExecutor, TaskExecutor {
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if isOwnerThread {
            readyJobs.append(job)
        } else {
            // A job from another thread: a task that hops here without a message (an actor
            // on this core called from elsewhere, or a continuation resumed elsewhere).
            // The Swift runtime cannot be told "full", so this path is a short mutex-guarded
            // queue, bounded by the number of suspended tasks.
            foreignJobs.withLock { $0.append(job) }
            wakeIfSleeping()
        }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func isSameExclusiveExecutionContext(other: Reactor) -> Bool {
        self === other
    }

    public func checkIsolated() {
        preconditionOwner()
    }
}

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call: no system call).
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
}

extension __kernel_timespec {
    init(duration: Duration) {
        let (seconds, attoseconds) = duration.components
        precondition(seconds >= 0 && attoseconds >= 0, "a negative duration")
        self.init(tv_sec: seconds, tv_nsec: attoseconds / 1_000_000_000)
    }
}
