/// A connection's receive buffer: bytes arrive at the back and requests are taken from the
/// front. It grows by doubling up to a bound and never shrinks while the connection lives.
/// Its memory stays put while a receive is in flight (the kernel writes into it).
final class ConnectionBuffer {
    private(set) var storage: UnsafeMutableRawBufferPointer
    private(set) var start = 0
    private(set) var end = 0

    init(capacity: Int) {
        storage = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { storage.deallocate() }

    /// The bytes received and not yet consumed.
    var unread: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[start..<end]) }

    /// Where the next receive may write, after making room for at least `needed` unread
    /// bytes in all. Returns nil when that would pass `limit`.
    func freeSpace(forUnreadTotal needed: Int, limit: Int) -> UnsafeMutableRawBufferPointer? {
        if start > 0 && (end == storage.count || needed > storage.count - start) {
            // Move what is unread to the front before growing.
            let count = end - start
            if count > 0 { storage.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: count) }
            start = 0
            end = count
        }
        if needed > storage.count || end == storage.count {
            var capacity = storage.count
            while capacity < needed || capacity == end { capacity *= 2 }
            guard capacity <= limit else { return nil }
            let grown = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
            grown.copyMemory(from: UnsafeRawBufferPointer(rebasing: storage[..<end]))
            storage.deallocate()
            storage = grown
        }
        return UnsafeMutableRawBufferPointer(rebasing: storage[end...])
    }

    func didReceive(_ count: Int) {
        precondition(end + count <= storage.count, "received past the buffer")
        end += count
    }

    func consume(_ count: Int) {
        precondition(start + count <= end, "consumed more than was received")
        start += count
        if start == end { start = 0; end = 0 }
    }
}
