import CShims

/// The B-tree file's page format. Little-endian throughout.
///
/// Pages 0 and 1 are the two superblock slots; tree, overflow and free-list pages follow.
/// Every page begins with the same 32-byte header: CRC32C of the rest of the page, kind,
/// entry count, its own page number (a write that landed elsewhere is caught) and the
/// checkpoint generation that wrote it.
enum BTreePage {
    /// 8 KiB: two entries of the largest key DynamoDB allows (2 KB partition key plus 1 KB
    /// sort key, with encoding) still fit a page, so splits always work, and a value up to
    /// `inlineEntryBytesMax` stays inline; a point read costs one 8 KiB read.
    static let size = 8192
    static let headerBytes = 32
    /// A leaf entry (key plus value) larger than this keeps its value in overflow pages.
    static let inlineEntryBytesMax = 3800
    /// The largest key: DynamoDB's partition key (2048) and sort key (1024) bytes, with room
    /// for the order-preserving encoding.
    static let keyBytesMax = 3200
    static let overflowDataBytes = size - headerBytes

    enum Kind: UInt8 {
        case leaf = 1
        case branch = 2
        case overflow = 3
        case freeList = 4
        case superblock = 5
    }

    /// Fills in the header of an encoded page and its checksum.
    static func seal(_ page: UnsafeMutableRawPointer, kind: Kind, count: Int, number: UInt64, generation: UInt64) {
        page.storeBytes(of: kind.rawValue, toByteOffset: 4, as: UInt8.self)
        page.storeBytes(of: UInt8(0), toByteOffset: 5, as: UInt8.self)
        page.storeBytes(of: UInt16(count).littleEndian, toByteOffset: 6, as: UInt16.self)
        page.storeBytes(of: number.littleEndian, toByteOffset: 8, as: UInt64.self)
        page.storeBytes(of: generation.littleEndian, toByteOffset: 16, as: UInt64.self)
        memset(page + 24, 0, 8)
        let checksum = granary_crc32c(0, page + 4, size - 4)
        page.storeBytes(of: checksum.littleEndian, toByteOffset: 0, as: UInt32.self)
    }

    struct Header {
        var kind: Kind
        var count: Int
        var number: UInt64
        var generation: UInt64
    }

    /// Verifies a page read from `number`; nil if its checksum, kind or number is wrong.
    static func open(_ page: UnsafeRawPointer, expectedNumber number: UInt64) -> Header? {
        let stored = UInt32(littleEndian: page.loadUnaligned(as: UInt32.self))
        guard stored == granary_crc32c(0, page + 4, size - 4),
            let kind = Kind(rawValue: page.load(fromByteOffset: 4, as: UInt8.self)),
            UInt64(littleEndian: page.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) == number
        else { return nil }
        return Header(
            kind: kind, count: Int(UInt16(littleEndian: page.loadUnaligned(fromByteOffset: 6, as: UInt16.self))),
            number: number, generation: UInt64(littleEndian: page.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
    }
}

/// Little-endian field writing and reading over raw page memory.
struct PageWriter {
    let base: UnsafeMutableRawPointer
    var offset: Int

    mutating func put<T: FixedWidthInteger>(_ value: T) {
        base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
    }

    mutating func put(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes {
            if $0.count > 0 { (base + offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        }
        offset += bytes.count
    }
}

struct PageReader {
    let base: UnsafeRawPointer
    var offset: Int
    let limit: Int

    /// Nil when the field would run past the page: a damaged page, never a crash.
    mutating func get<T: FixedWidthInteger>(_: T.Type) -> T? {
        guard offset + MemoryLayout<T>.size <= limit else { return nil }
        defer { offset += MemoryLayout<T>.size }
        return T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    /// Moves past `count` bytes; false if they would run past the page.
    mutating func skip(_ count: Int) -> Bool {
        guard count >= 0, offset + count <= limit else { return false }
        offset += count
        return true
    }

    mutating func bytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, offset + count <= limit else { return nil }
        defer { offset += count }
        return Array(UnsafeRawBufferPointer(start: base + offset, count: count))
    }
}

#if canImport(Glibc)
import Glibc
#endif
