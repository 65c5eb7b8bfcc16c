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

    /// Alignment and granularity of O_DIRECT buffers, offsets and lengths: the logical block
    /// size of every device we run on is at most 4 KiB.
    public static let directIOAlignment = 4096
}
