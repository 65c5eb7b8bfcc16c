/// Reads a log back at open: verifies each segment's header and the chain of LSNs across
/// segments, replays every valid record in order, and finds where the log ends.
///
/// Where the log ends decides between two outcomes:
/// - a torn or unwritten tail (the last group, cut short by a crash) is cut off: its
///   records were never acknowledged;
/// - a bad record with valid records of a *later* group after it, or a segment that does
///   not start where its predecessor ended, means acknowledged data was lost: that is
///   corruption, reported with the file and offset, and the log refuses to open.
///
/// Each open starts a new segment (see `WriteAheadLog.open`), so the leftovers of a torn
/// group stay past the end of their segment and are never read as part of the chain.
struct WALRecovery<S: Storage> {
    let storage: S
    let options: WALOptions
    /// Whether recovery may tidy the directory (remove a half-made segment, turn a segment
    /// whose header never became durable into a spare). A read-only check does not.
    var repair = true

    struct Segment: Sendable {
        var name: String
        var header: SegmentHeader
    }

    struct Result: Sendable {
        var segments: [Segment] = []
        var spares: [String] = []
        var salt: UInt64?
        var nextLSN: UInt64 = 1
        var nextSequence: UInt64 = 1
        /// The highest slot of any entry from `replayFrom` on.
        var lastSlot: UInt64 = 0
        /// The records from the requested LSN on, and every state record, in LSN order.
        var records: [WALRecord] = []
    }

    func recover(from replayFrom: UInt64) async throws(StorageError) -> Result {
        var result = Result()
        let names = try storage.list()
        result.spares = names.filter { $0.hasPrefix("wal-spare-") }
        if repair && names.contains("wal-new.tmp") { try await storage.remove("wal-new.tmp") }  // a roll cut short
        let live = names.compactMap { name in WALFormat.sequence(ofSegmentNamed: name).map { (name, $0) } }
            .sorted { $0.1 < $1.1 }
        guard let lastSequence = live.last?.1 else { return result }
        result.nextSequence = lastSequence + 1

        var expected: UInt64 = 0
        var previousEnd: (name: String, offset: UInt64)?
        let block = AlignedBytes(count: StorageLimits.blockSize)
        for (index, (name, sequence)) in live.enumerated() {
            let isLast = index == live.count - 1
            // Closed after its scan; on a failure, the file's deinit closes it.
            let file = try await storage.open(name, create: false)
            let read = try await file.read(into: block.bytes, at: 0)
            guard read == StorageLimits.blockSize, let header = SegmentHeader.decode(block.pointer),
                header.sequence == sequence
            else {
                if isLast {
                    // A roll that crashed before its header was durable: nothing was written
                    // after it, so the segment is only a spare.
                    if repair {
                        let spare = WALFormat.spareName(sequence)
                        try await storage.rename(name, to: spare)
                        result.spares.append(spare)
                    }
                    break
                }
                throw .corruption(file: name, offset: 0, detail: "segment header is missing or damaged")
            }
            if let salt = result.salt, salt != header.salt {
                throw .corruption(file: name, offset: 0, detail: "segment belongs to another log (salt differs)")
            }
            result.salt = header.salt
            if index == 0 {
                expected = header.firstLSN
            } else if header.firstLSN != expected, let (previousName, previousEnd) = previousEnd {
                // The damage is where the previous segment stopped reading, not here.
                throw .corruption(
                    file: previousName, offset: previousEnd,
                    detail: """
                        the log stops here at LSN \(expected) (a damaged or missing record), but the next \
                        segment, \(name), starts at LSN \(header.firstLSN): records were lost
                        """)
            }
            let (next, end) = try await scan(file: file, name: name, header: header, expected: expected, isLast: isLast)
            {
                if $0.lsn >= replayFrom || $0.kind == .state { result.records.append($0) }
                // Entries before `replayFrom` are the checkpoint's; the caller knows its slot.
                if $0.kind == .entry && $0.lsn >= replayFrom { result.lastSlot = max(result.lastSlot, $0.slot) }
            }
            expected = next
            previousEnd = (name, end)
            await file.close()
            result.segments.append(Segment(name: name, header: header))
        }
        result.nextLSN = max(expected, 1)
        return result
    }

    /// Replays a segment's valid records from `expected` on; returns the next LSN and the
    /// offset where the valid records end.
    private func scan(
        file: S.File, name: String, header: SegmentHeader, expected start: UInt64, isLast: Bool,
        replay: (WALRecord) -> Void
    ) async throws(StorageError) -> (nextLSN: UInt64, endOffset: UInt64) {
        // The file's own size: a log keeps the segment size it was written with, whatever
        // the options of the process that reads it.
        let end = try file.size() / UInt64(StorageLimits.blockSize) * UInt64(StorageLimits.blockSize)
        let reader = SegmentReader(file: file, segmentBytes: Int(end), windowBytes: options.groupBytesMax)
        let seed = WALFormat.crcSeed(salt: header.salt)
        let block = UInt64(StorageLimits.blockSize)
        var expected = start
        var position = block
        var groupFirst: UInt64?  // the group being read, nil at a group boundary
        let headerBytes = UInt64(WALFormat.recordHeaderBytes(version: header.version))
        while position + headerBytes <= end {
            let atBoundary = position % block == 0
            // A new group starts only on a block boundary; a record continuing the current
            // group may sit anywhere, a block boundary included.
            if let (recordHeader, record) = try await validRecord(
                reader, at: position, seed: seed, version: header.version),
                recordHeader.lsn == expected,
                recordHeader.groupFirstLSN == groupFirst
                    || (atBoundary && recordHeader.groupFirstLSN == recordHeader.lsn)
            {
                replay(record)
                expected += 1
                groupFirst = recordHeader.groupFirstLSN
                position += headerBytes + UInt64(recordHeader.length)
                continue
            }
            if !atBoundary, groupFirst != nil, try await isPadding(reader, at: position) {
                // Zero padding after a group's last record: the next group starts on the
                // next block.
                position = (position + block - 1) / block * block
                groupFirst = nil
                continue
            }
            break
        }
        if isLast {
            try await checkNothingValidFollows(
                reader, name: name, seed: seed, version: header.version, endPosition: position, segmentEnd: end,
                expected: expected, lastGoodGroup: groupFirst ?? expected)
        }
        return (expected, position)
    }

    /// Whether `position` (inside a block) starts the zero padding after a group's last
    /// record. A record starts with its magic, which has no zero byte, so the padding is
    /// recognised by zeros up to four bytes or the block's end, whichever is first (a
    /// record header may straddle a block boundary, so the next block is not looked at).
    private func isPadding(_ reader: SegmentReader<S.File>, at position: UInt64) async throws(StorageError) -> Bool {
        let block = UInt64(StorageLimits.blockSize)
        let count = Int(min(4, block - position % block))
        let bytes = try await reader.bytes(at: position, count: count)
        return (0..<count).allSatisfy { bytes.load(fromByteOffset: $0, as: UInt8.self) == 0 }
    }

    /// The end of the last segment must be the end of the log: a record of a later group
    /// past it would mean damage before the tail.
    private func checkNothingValidFollows(
        _ reader: SegmentReader<S.File>, name: String, seed: UInt32, version: UInt16, endPosition: UInt64,
        segmentEnd: UInt64, expected: UInt64, lastGoodGroup: UInt64
    ) async throws(StorageError) {
        let block = UInt64(StorageLimits.blockSize)
        var position = (endPosition / block + 1) * block
        while position + UInt64(WALFormat.recordHeaderBytes(version: version)) <= segmentEnd {
            if let (header, _) = try await validRecord(reader, at: position, seed: seed, version: version),
                header.lsn >= expected, header.groupFirstLSN > lastGoodGroup
            {
                throw .corruption(
                    file: name, offset: endPosition,
                    detail: """
                        the record expected here (LSN \(expected)) is damaged, but a later group (LSN \(header.lsn)) \
                        is intact at offset \(position)
                        """)
            }
            position += block
        }
    }

    /// The record at `position` if its header parses as `version` and its checksum verifies.
    private func validRecord(
        _ reader: SegmentReader<S.File>, at position: UInt64, seed: UInt32, version: UInt16
    ) async throws(StorageError) -> (RecordHeader, WALRecord)? {
        let headerSize = WALFormat.recordHeaderBytes(version: version)
        let headerBytes = try await reader.bytes(at: position, count: headerSize)
        guard let header = RecordHeader.decode(headerBytes, version: version),
            header.length <= UInt32(options.recordPayloadBytesMax),
            position + UInt64(headerSize) + UInt64(header.length) <= reader.segmentBytes
        else { return nil }
        let record = try await reader.bytes(at: position, count: headerSize + Int(header.length))
        guard RecordHeader.computeChecksum(at: record, payloadLength: Int(header.length), seed: seed) == header.checksum
        else { return nil }
        let payload = Array(UnsafeRawBufferPointer(start: record + headerSize, count: Int(header.length)))
        return (
            header,
            WALRecord(
                lsn: header.lsn, kind: header.kind, ballot: header.ballot, slot: header.slot, chosen: header.chosen,
                payload: payload)
        )
    }
}

/// Sequential reads of one segment through a window of aligned memory, so that a record
/// spanning a window boundary can still be seen whole.
final class SegmentReader<File: StorageFile> {
    private let file: File
    let segmentBytes: UInt64
    private let window: AlignedBytes
    private var windowStart: UInt64 = 0
    private var windowCount = 0

    init(file: File, segmentBytes: Int, windowBytes: Int) {
        self.file = file
        self.segmentBytes = UInt64(segmentBytes)
        window = AlignedBytes(count: windowBytes + StorageLimits.blockSize)
    }

    /// `count` bytes at `offset`, valid until the next call. Bytes past the end of the file
    /// read as zeros.
    func bytes(at offset: UInt64, count: Int) async throws(StorageError) -> UnsafeRawPointer {
        precondition(count + StorageLimits.blockSize <= window.count, "a read larger than the window")
        if offset >= windowStart && offset + UInt64(count) <= windowStart + UInt64(windowCount) {
            return UnsafeRawPointer(window.pointer + Int(offset - windowStart))
        }
        let start = offset / UInt64(StorageLimits.blockSize) * UInt64(StorageLimits.blockSize)
        let length = Int(min(UInt64(window.count), segmentBytes - start))
        let read = try await file.read(into: window.slice(0..<length), at: start)
        if read < length { memset(window.pointer + read, 0, length - read) }
        windowStart = start
        windowCount = length
        precondition(offset + UInt64(count) <= windowStart + UInt64(windowCount), "a read past the segment")
        return UnsafeRawPointer(window.pointer + Int(offset - windowStart))
    }
}

#if canImport(Glibc)
import Glibc
#endif
