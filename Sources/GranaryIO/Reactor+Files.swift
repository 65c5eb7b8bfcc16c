import CShims
import Glibc

/// File operations, each one io_uring request. They suspend the calling task, which must be
/// running on this reactor, and resume it here. Offsets and lengths of a descriptor opened
/// with O_DIRECT must be multiples of `IOLimits.directIOAlignment`, and so must the
/// buffer's address (an `AlignedBufferPool` buffer is).
extension Reactor {
    /// Opens (and creates, with `.create`) a file. The corresponding C function is `openat`.
    public func openFile(
        _ path: String, flags: Int32, permissions: mode_t = 0o644
    ) async throws(Errno) -> Int32 {
        // The kernel copies the path when it takes the submission, which happens after
        // this call has suspended; the copy lives until the completion.
        let copy = strdup(path)!
        defer { free(copy) }
        let completion = await perform { sqe, _ in
            io_uring_prep_openat(sqe, AT_FDCWD, copy, flags | granary_O_CLOEXEC, permissions)
        }
        return try completion.get()
    }

    /// Reads up to `buffer.count` bytes at `offset`; returns the count read (0 at the end).
    public func read(
        _ descriptor: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64
    ) async throws(Errno) -> Int {
        let completion = await perform(isFileIO: true) { sqe, _ in
            io_uring_prep_read(sqe, descriptor, buffer.baseAddress, UInt32(buffer.count), offset)
        }
        return Int(try completion.get())
    }

    /// Writes `buffer` at `offset`; returns the count written. With `durable`, the write
    /// completes only once the data is on stable storage (RWF_DSYNC: one request instead
    /// of a write and an fdatasync).
    public func write(
        _ descriptor: Int32, from buffer: UnsafeRawBufferPointer, at offset: UInt64, durable: Bool = false
    ) async throws(Errno) -> Int {
        let completion = await perform(isFileIO: true) { sqe, _ in
            io_uring_prep_write(sqe, descriptor, buffer.baseAddress, UInt32(buffer.count), offset)
            if durable { sqe.pointee.rw_flags = UInt32(bitPattern: RWF_DSYNC) }
        }
        return Int(try completion.get())
    }

    /// Reads into a registered pool buffer (IORING_OP_READ_FIXED: the kernel skips pinning
    /// the pages on every request).
    public func read(
        _ descriptor: Int32, into buffer: AlignedBuffer, count: Int, at offset: UInt64
    ) async throws(Errno) -> Int {
        precondition(count <= buffer.count, "read larger than its buffer")
        let completion = await perform(isFileIO: true) { sqe, _ in
            io_uring_prep_read_fixed(sqe, descriptor, buffer.pointer, UInt32(count), offset, Int32(buffer.index))
        }
        return Int(try completion.get())
    }

    /// Writes from a registered pool buffer (IORING_OP_WRITE_FIXED).
    public func write(
        _ descriptor: Int32, from buffer: AlignedBuffer, count: Int, at offset: UInt64, durable: Bool = false
    ) async throws(Errno) -> Int {
        precondition(count <= buffer.count, "write larger than its buffer")
        let completion = await perform(isFileIO: true) { sqe, _ in
            io_uring_prep_write_fixed(sqe, descriptor, buffer.pointer, UInt32(count), offset, Int32(buffer.index))
            if durable { sqe.pointee.rw_flags = UInt32(bitPattern: RWF_DSYNC) }
        }
        return Int(try completion.get())
    }

    /// Makes every completed write to the file durable. The corresponding C function is
    /// `fdatasync`. A failure here means the data may be lost: callers fence, never retry.
    public func synchronizeData(_ descriptor: Int32) async throws(Errno) {
        let completion = await perform(isFileIO: true, runsOnWorker: true) { sqe, _ in
            io_uring_prep_fsync(sqe, descriptor, granary_IORING_FSYNC_DATASYNC)
        }
        _ = try completion.get()
    }

    /// Allocates disk space for a range. The corresponding C function is `fallocate`.
    public func allocate(
        _ descriptor: Int32, offset: Int, length: Int, mode: Int32 = 0
    ) async throws(Errno) {
        let completion = await perform(isFileIO: true, runsOnWorker: true) { sqe, _ in
            io_uring_prep_fallocate(sqe, descriptor, mode, offset, length)
        }
        _ = try completion.get()
    }

    /// Renames a file, atomically replacing `target` if it exists. The kernel runs it on an
    /// io-wq worker, so the reactor's thread never blocks on the directory. The
    /// corresponding C function is `renameat`.
    public func renameFile(_ source: String, to target: String) async throws(Errno) {
        let sourceCopy = strdup(source)!
        let targetCopy = strdup(target)!
        defer {
            free(sourceCopy)
            free(targetCopy)
        }
        let completion = await perform(runsOnWorker: true) { sqe, _ in
            io_uring_prep_renameat(sqe, AT_FDCWD, sourceCopy, AT_FDCWD, targetCopy, 0)
        }
        _ = try completion.get()
    }

    /// Removes a file's directory entry. The corresponding C function is `unlinkat`.
    public func removeFile(_ path: String) async throws(Errno) {
        let copy = strdup(path)!
        defer { free(copy) }
        let completion = await perform(runsOnWorker: true) { sqe, _ in
            io_uring_prep_unlinkat(sqe, AT_FDCWD, copy, 0)
        }
        _ = try completion.get()
    }

    /// Closes a file or socket descriptor.
    public func close(_ descriptor: Int32) async throws(Errno) {
        let completion = await perform { sqe, _ in io_uring_prep_close(sqe, descriptor) }
        _ = try completion.get()
    }

    /// A request that does nothing: the floor of a round trip through the ring.
    public func noOperation() async -> Completion {
        await perform { sqe, _ in io_uring_prep_nop(sqe) }
    }
}
