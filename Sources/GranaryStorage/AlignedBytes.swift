#if canImport(Glibc)
import Glibc
#endif

/// Block-aligned memory owned by one object: what O_DIRECT reads into and writes from.
public final class AlignedBytes {
    public let pointer: UnsafeMutableRawPointer
    public let count: Int

    /// `count` bytes at a `StorageLimits.blockSize` boundary, zeroed unless a read is about
    /// to fill them; `count` is rounded up to whole blocks.
    public init(count: Int, zeroed: Bool = true) {
        let rounded = AlignedBytes.roundUp(max(count, 1))
        var memory: UnsafeMutableRawPointer?
        let result = posix_memalign(&memory, StorageLimits.blockSize, rounded)
        precondition(result == 0 && memory != nil, "out of memory allocating \(rounded) aligned bytes")
        pointer = memory!
        self.count = rounded
        if zeroed { memset(pointer, 0, rounded) }
    }

    deinit { free(pointer) }

    public var bytes: UnsafeMutableRawBufferPointer { .init(start: pointer, count: count) }

    public func slice(_ range: Range<Int>) -> UnsafeMutableRawBufferPointer {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "slice out of bounds")
        return .init(start: pointer + range.lowerBound, count: range.count)
    }

    /// `value` rounded up to whole blocks.
    public static func roundUp(_ value: Int) -> Int {
        (value + StorageLimits.blockSize - 1) / StorageLimits.blockSize * StorageLimits.blockSize
    }
}
