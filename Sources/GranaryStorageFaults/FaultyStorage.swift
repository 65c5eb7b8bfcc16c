import Glibc
import GranaryIO
import GranaryStorage

/// A disk in memory that fails the way real disks and crashes do, for the storage tests and
/// (next) the simulator, which runs the shipped replica on it.
///
/// Each file keeps two images: what a read returns now (`volatile`), and what would be on
/// the platter after a power cut (`durable`). A write changes the volatile image and is
/// remembered as unsynced; a sync makes every unsynced write of the file durable. A power
/// cut decides each unsynced write's fate: dropped, kept, or torn (a random subset of its
/// 512-byte sectors kept). File handles from before a cut fail afterwards, as the dead
/// process's would. Faults on request: bit flips, a misdirected write, and EIO or ENOSPC
/// on chosen calls. Directory changes are durable at once (a simplification: the log
/// syncs its directory after each, so it never relies on the difference).
public final class FaultyStorage: Storage, @unchecked Sendable {
    // @unchecked: a test drives it from one reactor thread only, like a real core's disk.
    public final class Image {
        public var volatile: [UInt8] = []
        public var durable: [UInt8] = []
        public var unsynced: [(offset: Int, bytes: [UInt8])] = []
    }

    public enum Operation: Equatable { case read, write, sync, allocate }

    struct PlannedFault {
        var operation: Operation
        var countdown: Int
        var errno: Int32
    }

    public private(set) var images: [String: Image] = [:]
    private var random: SplitMix64
    private var plannedFaults: [PlannedFault] = []
    private var misdirectNextWriteBy: Int?
    private var powerCutCountdown: Int?
    /// Bumped by every power cut; handles from an older generation fail.
    public private(set) var generation = 0
    public private(set) var syncCount = 0
    public private(set) var writeCount = 0
    /// Calls failed on purpose so far: planned faults, and calls from before a power cut.
    public private(set) var failuresInjected = 0

    public init(seed: UInt64) {
        random = SplitMix64(seed: seed)
    }

    public func open(_ name: String, create: Bool) async throws(StorageError) -> FaultyFile {
        if images[name] == nil {
            guard create else { throw .system(operation: "open", file: name, errno: ENOENT) }
            images[name] = Image()
        }
        return FaultyFile(name: name, image: images[name]!, storage: self, generation: generation)
    }

    public func list() throws(StorageError) -> [String] { images.keys.sorted() }

    public func rename(_ source: String, to target: String) throws(StorageError) {
        guard let image = images.removeValue(forKey: source) else {
            throw .system(operation: "rename", file: source, errno: ENOENT)
        }
        images[target] = image
    }

    public func remove(_ name: String) throws(StorageError) {
        guard images.removeValue(forKey: name) != nil else {
            throw .system(operation: "unlink", file: name, errno: ENOENT)
        }
    }

    public func synchronizeDirectory() async throws(StorageError) {}

    // MARK: Faults

    /// The next `operation` call, after `skipping` more of them, fails with `errno`.
    public func failNext(_ operation: Operation, errno: Int32 = EIO, skipping: Int = 0) {
        plannedFaults.append(PlannedFault(operation: operation, countdown: skipping, errno: errno))
    }

    /// The next write lands `delta` bytes (a multiple of the block size) away from where it
    /// was aimed, and reports success.
    public func misdirectNextWrite(by delta: Int) {
        misdirectNextWriteBy = delta
    }

    /// Cuts the power in the middle of the `operations`-th write or sync from now: that
    /// call and every later one from the old handles fail, as they would in a dead process.
    public func cutPower(afterOperations operations: Int) {
        powerCutCountdown = operations
    }

    /// Forgets the planned faults and power cut that have not come yet.
    public func cancelPlannedFaults() {
        plannedFaults.removeAll()
        powerCutCountdown = nil
    }

    /// Flips one bit of a file on the platter and in memory.
    public func flipBit(in name: String, atByte offset: Int, bit: Int = 0) {
        let image = images[name]!
        image.durable[offset] ^= UInt8(1 << bit)
        image.volatile[offset] ^= UInt8(1 << bit)
    }

    /// Cuts the power: each unsynced write is dropped, kept or torn at sector boundaries,
    /// at random, and every open handle dies.
    public func powerCut() {
        generation += 1
        powerCutCountdown = nil
        for image in images.values {
            for write in image.unsynced {
                switch random.next() % 3 {
                case 0:
                    break  // dropped
                case 1:
                    apply(write.bytes, at: write.offset, to: &image.durable)
                default:
                    let sector = StorageLimits.sectorSize
                    for start in stride(from: 0, to: write.bytes.count, by: sector) where random.next() % 2 == 0 {
                        apply(
                            Array(write.bytes[start..<min(start + sector, write.bytes.count)]),
                            at: write.offset + start, to: &image.durable)
                    }
                }
            }
            image.unsynced.removeAll()
            image.volatile = image.durable
        }
    }

    // MARK: Used by FaultyFile

    func checkFault(_ operation: Operation, file: FaultyFile) throws(StorageError) {
        if let countdown = powerCutCountdown, operation == .write || operation == .sync {
            if countdown == 0 {
                powerCutCountdown = nil
                powerCut()
            } else {
                powerCutCountdown = countdown - 1
            }
        }
        guard file.generation == generation else {
            failuresInjected += 1
            throw .system(operation: "\(operation)", file: file.name, errno: EIO)  // the process is dead
        }
        if let index = plannedFaults.firstIndex(where: { $0.operation == operation }) {
            if plannedFaults[index].countdown == 0 {
                let fault = plannedFaults.remove(at: index)
                failuresInjected += 1
                throw .system(operation: "\(operation)", file: file.name, errno: fault.errno)
            }
            plannedFaults[index].countdown -= 1
        }
    }

    func recordWrite(_ bytes: [UInt8], at offset: Int, image: Image) {
        writeCount += 1
        var target = offset
        if let delta = misdirectNextWriteBy {
            misdirectNextWriteBy = nil
            target = max(0, offset + delta)
        }
        apply(bytes, at: target, to: &image.volatile)
        image.unsynced.append((target, bytes))
    }

    func recordSync(_ image: Image) {
        syncCount += 1
        for write in image.unsynced { apply(write.bytes, at: write.offset, to: &image.durable) }
        image.unsynced.removeAll()
    }

    private func apply(_ bytes: [UInt8], at offset: Int, to image: inout [UInt8]) {
        if image.count < offset + bytes.count {
            image += [UInt8](repeating: 0, count: offset + bytes.count - image.count)
        }
        image.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
    }
}

public final class FaultyFile: StorageFile {
    public let name: String
    let image: FaultyStorage.Image
    let storage: FaultyStorage
    let generation: Int

    init(name: String, image: FaultyStorage.Image, storage: FaultyStorage, generation: Int) {
        self.name = name
        self.image = image
        self.storage = storage
        self.generation = generation
    }

    private func checkAlignment(_ pointer: UnsafeRawPointer?, _ count: Int, _ offset: UInt64) {
        let block = StorageLimits.blockSize
        precondition(
            Int(offset) % block == 0 && count % block == 0 && Int(bitPattern: pointer) % block == 0,
            "O_DIRECT needs block-aligned offsets, lengths and buffers (offset \(offset), count \(count))")
    }

    public func size() throws(StorageError) -> UInt64 { UInt64(image.volatile.count) }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws(StorageError) -> Int {
        checkAlignment(buffer.baseAddress, buffer.count, offset)
        try storage.checkFault(.read, file: self)
        let available = max(0, min(buffer.count, image.volatile.count - Int(offset)))
        if available > 0 {
            image.volatile.withUnsafeBytes {
                buffer.baseAddress!.copyMemory(from: $0.baseAddress! + Int(offset), byteCount: available)
            }
        }
        return available
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws(StorageError) {
        checkAlignment(buffer.baseAddress, buffer.count, offset)
        try storage.checkFault(.write, file: self)
        storage.recordWrite(Array(buffer), at: Int(offset), image: image)
    }

    public func writeDurably(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws(StorageError) {
        try await write(buffer, at: offset)
        try await synchronize()
    }

    public func synchronize() async throws(StorageError) {
        try storage.checkFault(.sync, file: self)
        storage.recordSync(image)
    }

    public func allocate(from offset: UInt64, length: UInt64) async throws(StorageError) {
        try storage.checkFault(.allocate, file: self)
    }

    public func close() async {}
}
