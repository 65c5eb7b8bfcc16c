import Glibc

/// The only way the storage engine reaches a disk: a directory of files with positioned,
/// aligned reads and writes and an explicit durability barrier. `ReactorStorage` is the
/// real one (io_uring, O_DIRECT); tests swap in `FaultyStorage`, which loses, tears, flips
/// and misdirects writes the way real disks and crashes do.
///
/// Every offset, length and buffer address passed to a file must be a multiple of
/// `StorageLimits.blockSize` (O_DIRECT's rule; the faulty storage enforces it too).
public protocol Storage: AnyObject {
    associatedtype File: StorageFile
    /// Opens a file of this directory, creating it (empty) when `create` and it is missing.
    func open(_ name: String, create: Bool) async throws(StorageError) -> File
    /// The names of the files in the directory.
    func list() throws(StorageError) -> [String]
    /// Renames a file, atomically replacing `target` if it exists.
    func rename(_ source: String, to target: String) async throws(StorageError)
    func remove(_ name: String) async throws(StorageError)
    /// Makes the directory's entries (creations, renames, removals) durable.
    func synchronizeDirectory() async throws(StorageError)
}

public protocol StorageFile: AnyObject {
    /// The file's name in its directory, for error messages.
    var name: String { get }
    /// The file's size in bytes.
    func size() throws(StorageError) -> UInt64
    /// Reads `buffer.count` bytes at `offset`; returns the count read (short at the end).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws(StorageError) -> Int
    /// Writes all of `buffer` at `offset`. Not durable until `synchronize()` completes.
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws(StorageError)
    /// Makes every completed write durable (fdatasync). A failure means written data may
    /// be lost: the caller must stop using the file, never retry and carry on.
    func synchronize() async throws(StorageError)
    /// Writes every run, with all of them in flight at once where the storage can (a
    /// checkpoint's pages are scattered over the file). Not durable until `synchronize()`.
    func write(runs: [(buffer: UnsafeRawBufferPointer, offset: UInt64)]) async throws(StorageError)
    /// Writes all of `buffer` at `offset`, durable when it returns (RWF_DSYNC where the
    /// storage has it: one request instead of a write and a sync).
    func writeDurably(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws(StorageError)
    /// Reserves `length` bytes from `offset` (fallocate).
    func allocate(from offset: UInt64, length: UInt64) async throws(StorageError)
    func close() async
}

extension StorageFile {
    /// One run after another: for storage that cannot do better (and for the faulty
    /// storage of the tests, whose faults apply to each run as to any write).
    public func write(runs: [(buffer: UnsafeRawBufferPointer, offset: UInt64)]) async throws(StorageError) {
        for run in runs { try await write(run.buffer, at: run.offset) }
    }
}

/// A failure of the storage layer or of the data it holds.
public enum StorageError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The operating system refused an operation (EIO, ENOSPC, ...).
    case system(operation: String, file: String, errno: Int32)
    /// Data on disk is not what was written: the replica must not be served.
    case corruption(file: String, offset: UInt64, detail: String)
    /// An earlier durability failure fenced the engine; reopen it to go on.
    case fenced(String)
    /// A request larger than a bound of the engine.
    case limitExceeded(String)

    public var description: String {
        switch self {
        case .system(let operation, let file, let errno):
            return "\(operation) of \(file) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case .corruption(let file, let offset, let detail):
            return "corruption in \(file) at offset \(offset): \(detail)"
        case .fenced(let cause):
            return "the storage engine is fenced after a durability failure (\(cause)); reopen it"
        case .limitExceeded(let detail):
            return detail
        }
    }
}

public enum StorageLimits {
    /// The unit of every read and write: O_DIRECT needs block-aligned offsets, lengths and
    /// buffers, and 4 KiB is the largest logical block of the devices we run on.
    public static let blockSize = 4096
    /// The sector a torn write may stop at: disks guarantee atomic 512-byte sectors, no
    /// more.
    public static let sectorSize = 512
}
