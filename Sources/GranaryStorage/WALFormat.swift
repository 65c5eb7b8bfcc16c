import CShims

/// The write-ahead log's on-disk format. Little-endian throughout.
///
/// A log is a chain of segment files, `wal-<sequence>.log`, each a fixed size. Block 0 of a
/// segment is its header; records follow from block 1. Records are written in groups (one
/// group per durable write); a group starts on a block boundary and its last block is
/// padded with zeros, so a new group never rewrites a block that already holds
/// acknowledged records.
///
/// Every record's CRC32C is seeded with the log's salt, a random number chosen when the log
/// was created and kept in every segment header: bytes that merely look like a record
/// (a user value holding a copy of one) never verify.
enum WALFormat {
    static let recordMagic: UInt32 = 0x4C41_5747  // "GWAL"
    static let segmentMagic: UInt32 = 0x4745_5347  // "GSEG"
    static let version: UInt16 = 1
    static let recordHeaderBytes = 48
    static let segmentHeaderBytes = 36

    static func segmentName(_ sequence: UInt64) -> String {
        "wal-" + String(sequence).leftPadded(to: 20) + ".log"
    }

    static func spareName(_ sequence: UInt64) -> String {
        "wal-spare-" + String(sequence).leftPadded(to: 20) + ".log"
    }

    /// The sequence number in a live segment's name, or nil for any other file.
    static func sequence(ofSegmentNamed name: String) -> UInt64? {
        guard name.hasPrefix("wal-"), name.hasSuffix(".log"), !name.hasPrefix("wal-spare-") else { return nil }
        return UInt64(name.dropFirst(4).dropLast(4))
    }

    static func crcSeed(salt: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: salt) ^ UInt32(truncatingIfNeeded: salt >> 32)
    }
}

/// The fixed part of a record. `groupFirstLSN` is the first LSN of the group the record
/// was written in; recovery uses it to tell a torn last group from damage before the tail.
struct RecordHeader: Equatable {
    var length: UInt32
    var checksum: UInt32
    var lsn: UInt64
    var ballot: UInt64
    var slot: UInt64
    var groupFirstLSN: UInt64

    /// Writes the header and payload at `target`, computing the checksum.
    static func encode(
        lsn: UInt64, ballot: UInt64, slot: UInt64, groupFirstLSN: UInt64,
        payload: UnsafeRawBufferPointer, seed: UInt32, into target: UnsafeMutableRawPointer
    ) {
        target.storeBytes(of: WALFormat.recordMagic.littleEndian, toByteOffset: 0, as: UInt32.self)
        target.storeBytes(of: WALFormat.version.littleEndian, toByteOffset: 4, as: UInt16.self)
        target.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
        target.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 8, as: UInt32.self)
        target.storeBytes(of: lsn.littleEndian, toByteOffset: 16, as: UInt64.self)
        target.storeBytes(of: ballot.littleEndian, toByteOffset: 24, as: UInt64.self)
        target.storeBytes(of: slot.littleEndian, toByteOffset: 32, as: UInt64.self)
        target.storeBytes(of: groupFirstLSN.littleEndian, toByteOffset: 40, as: UInt64.self)
        if payload.count > 0 {
            (target + WALFormat.recordHeaderBytes).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
        }
        let checksum = computeChecksum(at: UnsafeRawPointer(target), payloadLength: payload.count, seed: seed)
        target.storeBytes(of: checksum.littleEndian, toByteOffset: 12, as: UInt32.self)
    }

    /// The checksum over a record in place: the header without its checksum field, then
    /// the payload.
    static func computeChecksum(at record: UnsafeRawPointer, payloadLength: Int, seed: UInt32) -> UInt32 {
        var crc = granary_crc32c(seed, record, 12)
        crc = granary_crc32c(crc, record + 16, WALFormat.recordHeaderBytes - 16)
        return granary_crc32c(crc, record + WALFormat.recordHeaderBytes, payloadLength)
    }

    /// Parses the fixed fields, or nil when the magic or version is wrong (the checksum is
    /// verified separately, once the payload is in memory).
    static func decode(_ bytes: UnsafeRawPointer) -> RecordHeader? {
        guard UInt32(littleEndian: bytes.loadUnaligned(as: UInt32.self)) == WALFormat.recordMagic,
            UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self)) == WALFormat.version
        else { return nil }
        return RecordHeader(
            length: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
            checksum: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self)),
            lsn: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            ballot: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
            slot: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 32, as: UInt64.self)),
            groupFirstLSN: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 40, as: UInt64.self)))
    }
}

/// Block 0 of a segment.
struct SegmentHeader: Equatable, Sendable {
    var sequence: UInt64
    var firstLSN: UInt64
    var salt: UInt64

    func encode(into block: UnsafeMutableRawPointer) {
        memset(block, 0, StorageLimits.blockSize)
        block.storeBytes(of: WALFormat.segmentMagic.littleEndian, toByteOffset: 0, as: UInt32.self)
        block.storeBytes(of: WALFormat.version.littleEndian, toByteOffset: 4, as: UInt16.self)
        block.storeBytes(of: sequence.littleEndian, toByteOffset: 8, as: UInt64.self)
        block.storeBytes(of: firstLSN.littleEndian, toByteOffset: 16, as: UInt64.self)
        block.storeBytes(of: salt.littleEndian, toByteOffset: 24, as: UInt64.self)
        let checksum = granary_crc32c(0, block, 32)
        block.storeBytes(of: checksum.littleEndian, toByteOffset: 32, as: UInt32.self)
    }

    /// Parses and verifies a header block, or nil if it is not a valid one.
    static func decode(_ block: UnsafeRawPointer) -> SegmentHeader? {
        guard UInt32(littleEndian: block.loadUnaligned(as: UInt32.self)) == WALFormat.segmentMagic,
            UInt16(littleEndian: block.loadUnaligned(fromByteOffset: 4, as: UInt16.self)) == WALFormat.version,
            UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
                == granary_crc32c(0, block, 32)
        else { return nil }
        return SegmentHeader(
            sequence: UInt64(littleEndian: block.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            firstLSN: UInt64(littleEndian: block.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            salt: UInt64(littleEndian: block.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

#if canImport(Glibc)
import Glibc
#endif
