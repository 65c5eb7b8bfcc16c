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
///
/// The log is the replica's Paxos log (version 2): a record is an accepted entry (its slot,
/// the ballot it was accepted in, and the chosen prefix known when it was written) or the
/// acceptor's state (the promised ballot and the chosen prefix). Version 1 records carry no
/// Paxos fields: they are store operations in LSN order, read so that a log written by an
/// older build opens (and is checkpointed away at once: `ReplicaStore.open`). A segment's
/// version is its records' version.
///
/// Record header, version 2 (64 bytes): magic 4, version 2, kind 2, payload length 4,
/// checksum 4, LSN 8, ballot round 8, ballot node 4, reserved 4, slot 8, chosen 8, the
/// group's first LSN 8. Version 1 (48 bytes): magic 4, version 2, zero 2, length 4,
/// checksum 4, LSN 8, ballot 8 (always 0), slot 8 (always 0), the group's first LSN 8.
enum WALFormat {
    static let recordMagic: UInt32 = 0x4C41_5747  // "GWAL"
    static let segmentMagic: UInt32 = 0x4745_5347  // "GSEG"
    /// The version this build writes.
    static let version: UInt16 = 2
    static let versionsRead: ClosedRange<UInt16> = 1...2
    /// The header size of the version written (the larger).
    static let recordHeaderBytes = 64
    static let segmentHeaderBytes = 36

    static func recordHeaderBytes(version: UInt16) -> Int { version == 1 ? 48 : 64 }

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
    var version = WALFormat.version
    var kind: LogRecordKind = .entry
    var length: UInt32 = 0
    var checksum: UInt32 = 0
    var lsn: UInt64
    var ballot: LogBallot = .zero
    var slot: UInt64 = 0
    var chosen: UInt64 = 0
    var groupFirstLSN: UInt64

    var bytes: Int { WALFormat.recordHeaderBytes(version: version) }

    /// Writes the header (its `length` and `checksum` are computed) and payload at
    /// `target`, in the header's version.
    func encode(payload: UnsafeRawBufferPointer, seed: UInt32, into target: UnsafeMutableRawPointer) {
        target.storeBytes(of: WALFormat.recordMagic.littleEndian, toByteOffset: 0, as: UInt32.self)
        target.storeBytes(of: version.littleEndian, toByteOffset: 4, as: UInt16.self)
        target.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 8, as: UInt32.self)
        target.storeBytes(of: lsn.littleEndian, toByteOffset: 16, as: UInt64.self)
        if version == 1 {
            target.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
            target.storeBytes(of: UInt64(0), toByteOffset: 24, as: UInt64.self)
            target.storeBytes(of: UInt64(0), toByteOffset: 32, as: UInt64.self)
            target.storeBytes(of: groupFirstLSN.littleEndian, toByteOffset: 40, as: UInt64.self)
        } else {
            target.storeBytes(of: kind.rawValue.littleEndian, toByteOffset: 6, as: UInt16.self)
            target.storeBytes(of: ballot.round.littleEndian, toByteOffset: 24, as: UInt64.self)
            target.storeBytes(of: ballot.node.littleEndian, toByteOffset: 32, as: UInt32.self)
            target.storeBytes(of: UInt32(0), toByteOffset: 36, as: UInt32.self)
            target.storeBytes(of: slot.littleEndian, toByteOffset: 40, as: UInt64.self)
            target.storeBytes(of: chosen.littleEndian, toByteOffset: 48, as: UInt64.self)
            target.storeBytes(of: groupFirstLSN.littleEndian, toByteOffset: 56, as: UInt64.self)
        }
        if payload.count > 0 {
            (target + bytes).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
        }
        let checksum = Self.computeChecksum(at: UnsafeRawPointer(target), payloadLength: payload.count, seed: seed)
        target.storeBytes(of: checksum.littleEndian, toByteOffset: 12, as: UInt32.self)
    }

    /// The checksum over a record in place: the header without its checksum field, then
    /// the payload.
    static func computeChecksum(at record: UnsafeRawPointer, payloadLength: Int, seed: UInt32) -> UInt32 {
        let version = UInt16(littleEndian: record.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        let headerBytes = WALFormat.recordHeaderBytes(version: version)
        var crc = granary_crc32c(seed, record, 12)
        crc = granary_crc32c(crc, record + 16, headerBytes - 16)
        return granary_crc32c(crc, record + headerBytes, payloadLength)
    }

    /// Parses the fixed fields of a record of `version` (its segment's), or nil when the
    /// magic, the version or the kind is wrong (the checksum is verified separately, once
    /// the payload is in memory). `bytes` holds at least the version's header size.
    static func decode(_ bytes: UnsafeRawPointer, version: UInt16) -> RecordHeader? {
        guard UInt32(littleEndian: bytes.loadUnaligned(as: UInt32.self)) == WALFormat.recordMagic,
            UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt16.self)) == version
        else { return nil }
        func load<T: FixedWidthInteger>(_ offset: Int, _ type: T.Type) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        if version == 1 {
            return RecordHeader(
                version: 1, kind: .legacy, length: load(8, UInt32.self), checksum: load(12, UInt32.self),
                lsn: load(16, UInt64.self), groupFirstLSN: load(40, UInt64.self))
        }
        guard let kind = LogRecordKind(rawValue: load(6, UInt16.self)), kind != .legacy else { return nil }
        return RecordHeader(
            version: version, kind: kind, length: load(8, UInt32.self), checksum: load(12, UInt32.self),
            lsn: load(16, UInt64.self), ballot: LogBallot(round: load(24, UInt64.self), node: load(32, UInt32.self)),
            slot: load(40, UInt64.self), chosen: load(48, UInt64.self), groupFirstLSN: load(56, UInt64.self))
    }
}

/// Block 0 of a segment.
struct SegmentHeader: Equatable, Sendable {
    var sequence: UInt64
    var firstLSN: UInt64
    var salt: UInt64
    /// The version of the segment's records.
    var version = WALFormat.version

    func encode(into block: UnsafeMutableRawPointer) {
        memset(block, 0, StorageLimits.blockSize)
        block.storeBytes(of: WALFormat.segmentMagic.littleEndian, toByteOffset: 0, as: UInt32.self)
        block.storeBytes(of: version.littleEndian, toByteOffset: 4, as: UInt16.self)
        block.storeBytes(of: sequence.littleEndian, toByteOffset: 8, as: UInt64.self)
        block.storeBytes(of: firstLSN.littleEndian, toByteOffset: 16, as: UInt64.self)
        block.storeBytes(of: salt.littleEndian, toByteOffset: 24, as: UInt64.self)
        let checksum = granary_crc32c(0, block, 32)
        block.storeBytes(of: checksum.littleEndian, toByteOffset: 32, as: UInt32.self)
    }

    /// Parses and verifies a header block, or nil if it is not a valid one.
    static func decode(_ block: UnsafeRawPointer) -> SegmentHeader? {
        let version = UInt16(littleEndian: block.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        guard UInt32(littleEndian: block.loadUnaligned(as: UInt32.self)) == WALFormat.segmentMagic,
            WALFormat.versionsRead.contains(version),
            UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 32, as: UInt32.self))
                == granary_crc32c(0, block, 32)
        else { return nil }
        return SegmentHeader(
            sequence: UInt64(littleEndian: block.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            firstLSN: UInt64(littleEndian: block.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            salt: UInt64(littleEndian: block.loadUnaligned(fromByteOffset: 24, as: UInt64.self)), version: version)
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
