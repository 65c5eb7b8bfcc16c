/// Every bound of the I/O layer in one place, with the reason for each number.
public enum IOLimits {
    /// Submission queue entries per ring. 1024 lets one loop turn batch a whole burst of
    /// network and disk operations into a single `io_uring_enter`, for 64 KiB of SQ memory.
    public static let submissionQueueEntries: UInt32 = 1024

    /// Completion queue entries: 4x the submission queue, because multishot accept and
    /// recv post several completions per submission.
    public static let completionQueueEntries: UInt32 = 4096

    /// Operations in flight per core (the operation table's size). Past it, a new operation
    /// completes at once with EBUSY: back-pressure instead of unbounded growth.
    public static let operationsInFlightMax = 16_384

    /// Cross-core messages waiting in one core's inbox. A full inbox refuses the message
    /// (the sender backs off); 4096 covers a full burst from every peer core.
    public static let inboxCapacity = 4096

    /// Completions copied out of the ring per drain; the rest wait for the next turn.
    public static let completionBatchMax = 256

    /// How long a reactor keeps polling (non-blocking `io_uring_enter`, and its inbox)
    /// after its last progress before it sleeps. A wake-up costs tens of microseconds on a
    /// virtual CPU that halts when idle: polling this briefly keeps a busy device fed and
    /// answers a peer core's reply without one (BENCHMARKS.md). An idle core sleeps after
    /// this long, so the cost is bounded to 50 us of CPU per burst of work.
    public static let pollBeforeSleepNanoseconds: UInt64 = 50_000

    /// How long a reactor polls after its last progress while file reads or writes are
    /// at the device: about as long as a durable write or an uncached read at depth 32
    /// takes on our disks (80-250 us), so that most completions are taken without a
    /// wake-up, which costs about 25 us here. One durable write at a time ran at 8.9-9.0k/s
    /// sleeping after 50 us and 10.2-12.1k/s polling, where fio's io_uring O_DSYNC writes
    /// did 11.0-11.3k (granary-syncbench dsync); uncached page reads at depth 32 went from
    /// 0.71 to 0.84-0.90 of fio's (BENCHMARKS.md). 500 us read no better, and GetItem, whose
    /// core shares the machine with its client, did worse. Not for syncs: an io-wq thread
    /// on the same core runs them, and polling holds it off (one write and fdatasync at a
    /// time fell from 6.4k/s to 1.7k/s when polled for).
    public static let pollForFilesNanoseconds: UInt64 = 250_000

    /// How long a reactor runs (working or polling) without sleeping before it offers its
    /// CPU to anything else that waits for it (`sched_yield`, which returns at once when
    /// nothing does). The scheduler would otherwise hand the CPU over only when the
    /// reactor's slice ends, which this project's 250 Hz kernels notice at the next tick:
    /// a client thread beside a node waited up to 1-5 ms behind a pinned reactor while
    /// its requests aged (`perf sched timehist`, BENCHMARKS.md, "The API"). With it,
    /// alternating `tools/profile-api` runs: GetItem 73.2k/68.1k against 73.3k/66.3k
    /// requests/s, durable PutItem 41.6k/43.1k against 39.4k/41.3k (the fdatasync's io-wq
    /// thread shares the reactor's CPU), and a lower p99 in all four.
    public static let runBeforeYieldNanoseconds: UInt64 = 100_000

    /// File requests (reads, writes, syncs) prepared before the reactor flushes them to the
    /// kernel, even mid-turn. The block layer holds a multi-request submission back until
    /// the whole batch is queued (it "plugs"), and a virtual disk then sees one kick and
    /// answers with one late interrupt: on this project's machines a whole turn's batch of
    /// 32 reads ran 12-15% below fio, and flushing every 4 came within 5% (BENCHMARKS.md).
    /// Network requests do not plug, so they still go down once per turn.
    public static let fileSubmissionBatchMax = 4

    /// Alignment and granularity of O_DIRECT buffers, offsets and lengths: the logical block
    /// size of every device we run on is at most 4 KiB.
    public static let directIOAlignment = 4096
}
