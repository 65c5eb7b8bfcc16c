import CShims
import Glibc

/// One buffer of an `AlignedBufferPool`: page-aligned memory, suitable for O_DIRECT and
/// registered with its core's ring under `index`.
public struct AlignedBuffer: @unchecked Sendable {
    // @unchecked: the pool lends a buffer to one owner at a time; it never crosses cores.
    public let index: Int
    public let pointer: UnsafeMutableRawPointer
    public let count: Int

    public var bytes: UnsafeMutableRawBufferPointer { .init(start: pointer, count: count) }
}

/// A core's fixed set of I/O buffers, allocated once on the core's NUMA node and
/// registered with its io_uring (so READ_FIXED and WRITE_FIXED skip pinning pages on every
/// request). An empty pool answers nil: the caller waits or refuses, memory never grows.
public final class AlignedBufferPool {
    public let bufferSize: Int
    public let bufferCount: Int
    private let region: UnsafeMutableRawPointer
    private let regionSize: Int
    private let fromNUMA: Bool
    private var free: [Int]
    private var lent: [Bool]

    /// Allocates `bufferCount` buffers of `bufferSize` bytes (a multiple of 4 KiB) on the
    /// NUMA node of `cpu` (any node when libnuma reports no NUMA support), and registers
    /// them with `reactor`'s ring. Call on the reactor's thread.
    public init(reactor: Reactor, bufferSize: Int, bufferCount: Int) throws(Errno) {
        reactor.preconditionOwner()
        precondition(
            bufferSize > 0 && bufferSize % IOLimits.directIOAlignment == 0,
            "buffer size must be a positive multiple of \(IOLimits.directIOAlignment)")
        precondition(bufferCount > 0 && bufferCount <= 16_384, "io_uring registers at most 16384 buffers")
        self.bufferSize = bufferSize
        self.bufferCount = bufferCount
        regionSize = bufferSize * bufferCount
        if numa_available() >= 0, let cpu = reactor.cpu,
            let memory = numa_alloc_onnode(regionSize, numa_node_of_cpu(Int32(cpu)))
        {
            region = memory  // page-aligned, like every mmap
            fromNUMA = true
        } else {
            var memory: UnsafeMutableRawPointer?
            let result = posix_memalign(&memory, IOLimits.directIOAlignment, regionSize)
            guard result == 0, let memory else { throw Errno(result) }
            region = memory
            fromNUMA = false
        }
        free = Array((0..<bufferCount).reversed())
        lent = Array(repeating: false, count: bufferCount)
        var vectors = (0..<bufferCount).map { iovec(iov_base: region + $0 * bufferSize, iov_len: bufferSize) }
        let result = io_uring_register_buffers(&reactor.ring, &vectors, UInt32(bufferCount))
        if result < 0 {
            release()
            throw Errno(result: result)
        }
    }

    deinit { release() }

    private func release() {
        if fromNUMA { numa_free(region, regionSize) } else { Glibc.free(region) }
    }

    public var availableCount: Int { free.count }

    /// Lends a buffer, or nil when all are lent.
    public func acquire() -> AlignedBuffer? {
        guard let index = free.popLast() else { return nil }
        lent[index] = true
        return AlignedBuffer(index: index, pointer: region + index * bufferSize, count: bufferSize)
    }

    /// Takes a buffer back.
    public func release(_ buffer: AlignedBuffer) {
        precondition(buffer.pointer == region + buffer.index * bufferSize, "a buffer from another pool")
        precondition(lent[buffer.index], "a buffer released twice")
        lent[buffer.index] = false
        free.append(buffer.index)
    }
}
