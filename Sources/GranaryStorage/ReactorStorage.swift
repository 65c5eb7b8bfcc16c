import CShims
import Glibc
import GranaryIO

/// Storage on a real directory through the calling core's reactor: files opened with
/// O_DIRECT, and every open, read, write, sync, allocation, rename and removal an io_uring
/// request, so that a log's segment roll never blocks the core's thread. Only the listing
/// of the directory, which runs once when a log is opened, is a plain system call.
public final class ReactorStorage: Storage, @unchecked Sendable {
    // @unchecked: it holds only a path and a reactor, and every operation goes through the
    // reactor, which checks that it runs on the reactor's own thread.
    public let path: String
    private let reactor: Reactor

    public init(path: String, reactor: Reactor) {
        self.path = path
        self.reactor = reactor
    }

    public func open(_ name: String, create: Bool) async throws(StorageError) -> ReactorFile {
        let flags = O_RDWR | granary_O_DIRECT | (create ? O_CREAT : 0)
        do {
            let descriptor = try await reactor.openFile(path + "/" + name, flags: flags)
            return ReactorFile(name: name, descriptor: descriptor, reactor: reactor)
        } catch {
            throw .system(operation: "open", file: name, errno: error.rawValue)
        }
    }

    public func list() throws(StorageError) -> [String] {
        guard let directory = opendir(path) else { throw .system(operation: "opendir", file: path, errno: errno) }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
                String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public func rename(_ source: String, to target: String) async throws(StorageError) {
        do {
            try await reactor.renameFile(path + "/" + source, to: path + "/" + target)
        } catch {
            throw .system(operation: "rename", file: source, errno: error.rawValue)
        }
    }

    public func remove(_ name: String) async throws(StorageError) {
        do {
            try await reactor.removeFile(path + "/" + name)
        } catch {
            throw .system(operation: "unlink", file: name, errno: error.rawValue)
        }
    }

    public func synchronizeDirectory() async throws(StorageError) {
        let descriptor: Int32
        do {
            descriptor = try await reactor.openFile(path, flags: O_RDONLY | O_DIRECTORY)
        } catch {
            throw .system(operation: "open", file: path, errno: error.rawValue)
        }
        var failure: Errno?
        do {
            try await reactor.synchronizeData(descriptor)
        } catch {
            failure = error
        }
        try? await reactor.close(descriptor)
        if let failure { throw .system(operation: "fsync", file: path, errno: failure.rawValue) }
    }
}

public final class ReactorFile: StorageFile, @unchecked Sendable {
    // @unchecked: as ReactorStorage; `closed` is touched only on the reactor's thread.
    public let name: String
    private let descriptor: Int32
    private let reactor: Reactor
    private var closed = false

    init(name: String, descriptor: Int32, reactor: Reactor) {
        self.name = name
        self.descriptor = descriptor
        self.reactor = reactor
    }

    deinit {
        if !closed { Glibc.close(descriptor) }
    }

    public func size() throws(StorageError) -> UInt64 {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw .system(operation: "fstat", file: name, errno: errno) }
        return UInt64(status.st_size)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws(StorageError) -> Int {
        var done = 0
        while done < buffer.count {
            let count: Int
            do {
                count = try await reactor.read(
                    descriptor, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]),
                    at: offset + UInt64(done))
            } catch {
                throw .system(operation: "read", file: name, errno: error.rawValue)
            }
            if count == 0 { break }
            done += count
        }
        return done
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws(StorageError) {
        try await write(buffer, at: offset, durable: false)
    }

    public func writeDurably(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) async throws(StorageError) {
        try await write(buffer, at: offset, durable: true)
    }

    private func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64, durable: Bool) async throws(StorageError) {
        var done = 0
        while done < buffer.count {
            do {
                done += try await reactor.write(
                    descriptor, from: UnsafeRawBufferPointer(rebasing: buffer[done...]),
                    at: offset + UInt64(done), durable: durable)
            } catch {
                throw .system(operation: durable ? "write (RWF_DSYNC)" : "write", file: name, errno: error.rawValue)
            }
        }
    }

    /// Submits every run at once and waits for all of them. A run the kernel wrote only in
    /// part (or could not take: EBUSY) is finished by the one-at-a-time path.
    public func write(runs: [(buffer: UnsafeRawBufferPointer, offset: UInt64)]) async throws(StorageError) {
        guard !runs.isEmpty else { return }
        var written = [Int](repeating: 0, count: runs.count)
        var failure: Int32?
        var outstanding = runs.count
        await withUnsafeContinuation { (done: UnsafeContinuation<Void, Never>) in
            for (index, run) in runs.enumerated() {
                reactor.submit(
                    isFileIO: true,
                    { completion in
                        if completion.result >= 0 {
                            written[index] = Int(completion.result)
                        } else if completion.result != -EBUSY, failure == nil {
                            failure = -completion.result
                        }
                        outstanding -= 1
                        if outstanding == 0 { done.resume() }
                    }
                ) { sqe, _ in
                    io_uring_prep_write(sqe, descriptor, run.buffer.baseAddress, UInt32(run.buffer.count), run.offset)
                }
            }
        }
        if let failure { throw .system(operation: "write", file: name, errno: failure) }
        for (index, run) in runs.enumerated() where written[index] < run.buffer.count {
            let rest = UnsafeRawBufferPointer(rebasing: run.buffer[written[index]...])
            try await write(rest, at: run.offset + UInt64(written[index]), durable: false)
        }
    }

    public func synchronize() async throws(StorageError) {
        do {
            try await reactor.synchronizeData(descriptor)
        } catch {
            throw .system(operation: "fdatasync", file: name, errno: error.rawValue)
        }
    }

    public func allocate(from offset: UInt64, length: UInt64) async throws(StorageError) {
        do {
            try await reactor.allocate(descriptor, offset: Int(offset), length: Int(length))
        } catch {
            throw .system(operation: "fallocate", file: name, errno: error.rawValue)
        }
    }

    public func close() async {
        guard !closed else { return }
        closed = true
        try? await reactor.close(descriptor)
    }
}
