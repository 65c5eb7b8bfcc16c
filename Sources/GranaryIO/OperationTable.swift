import CShims

/// Who is waiting for an operation's completion.
enum CompletionHandler {
    /// A completion-callback operation. For a multishot operation it runs once per
    /// completion, and the slot stays taken while the kernel says more will come.
    case callback((Completion) -> Void)
    /// A suspended task, resumed (once) with the completion.
    case continuation(UnsafeContinuation<Completion, Never>)
}

/// The outcome of one io_uring operation, copied out of its completion queue entry.
public struct Completion: Sendable {
    /// The kernel's result: a count or descriptor when >= 0, `-errno` when negative.
    public var result: Int32
    /// The completion's flags (IORING_CQE_F_MORE, ...).
    public var flags: UInt32

    /// Whether a multishot operation will post more completions.
    public var hasMore: Bool { flags & granary_IORING_CQE_F_MORE != 0 }

    /// The result as a value, or the errno it carries.
    public func get() throws(Errno) -> Int32 {
        if result < 0 { throw Errno(result: result) }
        return result
    }
}

/// Names one operation in flight, for cancellation. It is the operation's `user_data`:
/// the slot index in the low 32 bits and the slot's generation in the high 32, so a stale
/// identifier can never cancel the operation that reused its slot.
public struct OperationID: Hashable, Sendable {
    public let userData: UInt64
}

/// The fixed table of operations in flight on one core, indexed by `user_data`.
///
/// Memory is set aside once, at start-up: a handler per slot, and a small scratch area per
/// slot for what the kernel reads at submission time (a timeout's timespec, a socket
/// address), which must stay put until the submission queue is flushed.
struct OperationTable: ~Copyable {
    static let scratchBytes = 160

    private var handlers: [CompletionHandler?]
    private var generations: [UInt32]
    private var onDevice: [Bool]
    /// File reads and writes in flight: the device answers them within its latency, so
    /// the reactor polls for them rather than sleeping.
    private(set) var deviceOperationsInFlight = 0
    private var freeSlots: [Int32]
    let scratch: UnsafeMutableRawPointer

    init(capacity: Int) {
        precondition(capacity > 0 && capacity < Int(Int32.max))
        handlers = Array(repeating: nil, count: capacity)
        generations = Array(repeating: 0, count: capacity)
        onDevice = Array(repeating: false, count: capacity)
        freeSlots = (0..<Int32(capacity)).reversed()
        scratch = .allocate(byteCount: capacity * Self.scratchBytes, alignment: 16)
    }

    deinit {
        scratch.deallocate()
    }

    var inFlightCount: Int { handlers.count - freeSlots.count }

    /// Takes a free slot for `handler`, or returns nil when every slot is in flight.
    mutating func acquire(_ handler: CompletionHandler, onDevice device: Bool = false) -> OperationID? {
        guard let index = freeSlots.popLast() else { return nil }
        precondition(handlers[Int(index)] == nil, "a free slot held a handler")
        handlers[Int(index)] = handler
        onDevice[Int(index)] = device
        if device { deviceOperationsInFlight += 1 }
        return OperationID(userData: UInt64(generations[Int(index)]) << 32 | UInt64(index))
    }

    /// The scratch memory of a slot, valid until the slot is released.
    func scratch(for id: OperationID) -> UnsafeMutableRawPointer {
        scratch + Int(id.userData & 0xFFFF_FFFF) * Self.scratchBytes
    }

    /// Whether `id` names an operation still in flight (not a reused slot).
    func contains(_ id: OperationID) -> Bool {
        let index = Int(id.userData & 0xFFFF_FFFF)
        return index < handlers.count && handlers[index] != nil
            && generations[index] == UInt32(id.userData >> 32)
    }

    /// The handler of a completion. The slot is released unless `keep` (a multishot
    /// operation with more to come).
    mutating func handler(for id: OperationID, keep: Bool) -> CompletionHandler {
        precondition(contains(id), "a completion named no operation in flight")
        let index = Int(id.userData & 0xFFFF_FFFF)
        let handler = handlers[index]!
        if !keep {
            handlers[index] = nil
            if onDevice[index] { deviceOperationsInFlight -= 1 }
            generations[index] &+= 1
            freeSlots.append(Int32(index))
        }
        return handler
    }
}
