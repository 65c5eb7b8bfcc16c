import GranaryIO

/// One replica's durable key-value state: a write-ahead log in front of a B-tree, in one
/// directory, on one core.
///
/// A write is logged, then applied to the tree in LSN order, then acknowledged: once
/// `put` returns, the write survives a crash. Checkpoints run by themselves when the
/// tree's dirty pages or the log's segments pass their bounds; a checkpoint makes the tree
/// durable up to an LSN and lets the log recycle the segments behind it. Opening recovers:
/// the tree as of its last checkpoint, then every log record after it, replayed.
///
/// Tree operations run one at a time (a FIFO lock): a read that waits for a page while a
/// write splits the node it holds would otherwise miss keys. A checkpoint holds the lock
/// only while it takes its snapshot; its writes run alongside new operations.
public actor ReplicaStore<S: Storage & Sendable> {
    public struct Options: Sendable {
        public var log = WALOptions()
        public var tree = BTree<S>.Options()
        /// Checkpoint when dirty pages take this many 8 KiB pages' worth of memory (32 MiB
        /// by default; `BTree.dirtyBytes`).
        public var checkpointDirtyPages = 4096
        /// Checkpoint when the log has this many live segments.
        public var checkpointLogSegments = 4
        public init() {}

        /// Bounds that keep the store's memory within `bytes`: seven eighths for the tree's
        /// pages, clean and dirty, of which dirty pages (counted by the memory they take)
        /// may have half (a checkpoint runs when they do), and the log's staging buffer
        /// out of the rest. A tree whose pages all fit the dirty share is checkpointed by
        /// the log's length alone, instead of being rewritten whole each time all its pages
        /// had been touched (BENCHMARKS.md). A cached clean page is counted at 12 KiB: its
        /// buffer comes from posix_memalign, which spends 12 KiB on 8 KiB at a 4 KiB
        /// boundary (measured: 10,000 such buffers, 121 MB of RSS), and the node and its
        /// entry offsets come on top of that.
        public init(memoryBudgetBytes bytes: Int) {
            precondition(bytes >= 16 << 20, "a store needs at least 16 MiB")
            let page = BTreePage.size
            tree.cleanPageBytes = page + 4096
            tree.cachePages = max(32, bytes * 7 / 8 / tree.cleanPageBytes)
            checkpointDirtyPages = max(16, bytes / 2 / page)
            log.groupBytesMax =
                min(2 << 20, max(1 << 20, bytes / 16)) / StorageLimits.blockSize * StorageLimits.blockSize
            log.recordPayloadBytesMax = min(log.recordPayloadBytesMax, log.groupBytesMax - WALFormat.recordHeaderBytes)
        }
    }

    private nonisolated let executor: any SerialExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private let tree: BTree<S>
    private let log: WriteAheadLog<S>
    private let options: Options
    /// Every record up to here is applied to the tree.
    public private(set) var appliedLSN: UInt64
    private var logged: [UInt64: Operation] = [:]  // logged, waiting for earlier LSNs
    private var applyWaiters: [UInt64: [UnsafeContinuation<Void, Never>]] = [:]
    private var applying = false
    /// The tree lock: tree operations run one at a time, in arrival order.
    private let treeLock = FIFOLocks<TreeLock>()
    private enum TreeLock { case tree }
    private var checkpointRunning = false
    private var writesSinceLogCheck = 256  // so that open checks the log at once
    private var fenced: StorageError?
    /// Checkpoints completed since open (for tests and metrics).
    public private(set) var checkpointCount = 0

    enum Operation {
        case put(key: [UInt8], value: [UInt8])
        case delete(key: [UInt8])

        func encode() -> [UInt8] {
            switch self {
            case .put(let key, let value):
                return [1] + withUnsafeBytes(of: UInt32(key.count).littleEndian) { Array($0) } + key + value
            case .delete(let key):
                return [2] + withUnsafeBytes(of: UInt32(key.count).littleEndian) { Array($0) } + key
            }
        }

        static func decode(_ bytes: [UInt8]) -> Operation? {
            guard bytes.count >= 5 else { return nil }
            let length = Int(bytes[1]) | Int(bytes[2]) << 8 | Int(bytes[3]) << 16 | Int(bytes[4]) << 24
            guard 5 + length <= bytes.count else { return nil }
            let key = Array(bytes[5..<(5 + length)])
            switch bytes[0] {
            case 1: return .put(key: key, value: Array(bytes[(5 + length)...]))
            case 2: return bytes.count == 5 + length ? .delete(key: key) : nil
            default: return nil
            }
        }
    }

    /// Opens the replica in `storage`, recovering it. Call on the core whose reactor is
    /// `executor`. A long log is checkpointed at once, so the next recovery is short.
    public static func open(
        storage: S, options: Options = Options(), executor: any SerialExecutor
    ) async throws(StorageError) -> ReplicaStore {
        let tree = try await BTree.open(storage: storage, options: options.tree)
        let (log, records) = try await WriteAheadLog.open(
            storage: storage, options: options.log, executor: executor, replayFrom: tree.checkpointLSN + 1)
        let applied = try await replay(records, into: tree)
        let store = ReplicaStore(tree: tree, log: log, options: options, executor: executor, appliedLSN: applied)
        await store.checkpointIfDue()
        return store
    }

    /// Recovers the replica in `storage` into memory without changing any file, for
    /// checks and tools: the returned tree answers reads (and must not be checkpointed).
    /// Throws `.corruption` where `open` would.
    public static func recoverForReading(
        storage: S, options: Options = Options()
    ) async throws(StorageError) -> BTree<S> {
        let tree = try await BTree.open(storage: storage, options: options.tree)
        let records = try await WriteAheadLog.readAll(storage: storage, options: options.log)
        _ = try await replay(records.filter { $0.lsn > tree.checkpointLSN }, into: tree)
        return tree
    }

    private static func replay(_ records: [WALRecord], into tree: BTree<S>) async throws(StorageError) -> UInt64 {
        var applied = tree.checkpointLSN
        for record in records {
            guard let operation = Operation.decode(record.payload) else {
                throw .corruption(file: "wal", offset: 0, detail: "log record \(record.lsn) is not a store operation")
            }
            try await apply(operation, to: tree)
            applied = record.lsn
        }
        return applied
    }

    private init(
        tree: BTree<S>, log: WriteAheadLog<S>, options: Options, executor: any SerialExecutor, appliedLSN: UInt64
    ) {
        self.tree = tree
        self.log = log
        self.options = options
        self.executor = executor
        self.appliedLSN = appliedLSN
    }

    // MARK: Operations

    public func get(_ key: [UInt8]) async throws(StorageError) -> [UInt8]? {
        if let fenced { throw .fenced(fenced.description) }
        await treeLock.acquire(.tree)
        defer { treeLock.release(.tree) }
        return try await tree.get(key)
    }

    /// See `BTree.scan`.
    public func scan(
        from start: [UInt8]?, reverse: Bool = false, bound: [UInt8]? = nil, limit: Int
    ) async throws(StorageError) -> [(key: [UInt8], value: [UInt8])] {
        if let fenced { throw .fenced(fenced.description) }
        await treeLock.acquire(.tree)
        defer { treeLock.release(.tree) }
        return try await tree.scan(from: start, reverse: reverse, bound: bound, limit: limit)
    }

    /// Stores `value` under `key`; durable and visible when it returns.
    public func put(_ key: [UInt8], _ value: [UInt8]) async throws(StorageError) {
        guard key.count <= BTreePage.keyBytesMax else {
            throw .limitExceeded("a key of \(key.count) bytes exceeds \(BTreePage.keyBytesMax)")
        }
        try await write(.put(key: key, value: value))
    }

    public func delete(_ key: [UInt8]) async throws(StorageError) {
        try await write(.delete(key: key))
    }

    private func write(_ operation: Operation) async throws(StorageError) {
        if let fenced { throw .fenced(fenced.description) }
        let lsn: UInt64
        do throws(StorageError) {
            lsn = try await log.append(operation.encode())
        } catch {
            if case .limitExceeded = error { throw error }  // refused, nothing written
            fence(error)
            throw error
        }
        logged[lsn] = operation
        await applyLogged()
        if appliedLSN < lsn {
            // An earlier record's writer has not come back yet; its apply will carry ours.
            // Checked again inside: other jobs of this actor may run before the body.
            await withUnsafeContinuation { waiter in
                if appliedLSN >= lsn { waiter.resume() } else { applyWaiters[lsn, default: []].append(waiter) }
            }
        }
        if let fenced { throw .fenced(fenced.description) }
        await checkpointIfDue()
    }

    /// Applies logged records in LSN order, one at a time, while the next one is here.
    private func applyLogged() async {
        guard !applying else { return }
        applying = true
        defer { applying = false }
        while let operation = logged.removeValue(forKey: appliedLSN + 1) {
            await treeLock.acquire(.tree)
            do throws(StorageError) {
                try await Self.apply(operation, to: tree)
            } catch {
                // The record is durable but the tree could not take it: stop serving, so
                // the tree never answers without a write the log holds. A reopen replays it.
                fence(error)
            }
            treeLock.release(.tree)
            appliedLSN += 1
            for waiter in applyWaiters.removeValue(forKey: appliedLSN) ?? [] { waiter.resume() }
        }
    }

    private static func apply(_ operation: Operation, to tree: BTree<S>) async throws(StorageError) {
        switch operation {
        case .put(let key, let value): try await tree.put(key, value)
        case .delete(let key): try await tree.delete(key)
        }
    }

    // MARK: Checkpoints

    private func checkpointIfDue() async {
        guard !checkpointRunning, fenced == nil else { return }
        // The dirty-page count is ours to read; the log's segment count is a hop to its
        // actor, so it is asked every 256 writes (a segment holds thousands of records).
        writesSinceLogCheck += 1
        var due = tree.dirtyBytes >= options.checkpointDirtyPages * BTreePage.size
        if !due && writesSinceLogCheck >= 256 {
            writesSinceLogCheck = 0
            due = await log.segmentCount >= options.checkpointLogSegments
        }
        guard due else { return }
        do throws(StorageError) {
            try await checkpoint()
        } catch {
            fence(error)
        }
    }

    /// Makes the tree durable up to the last applied write and recycles the log behind it.
    public func checkpoint() async throws(StorageError) {
        guard !checkpointRunning else { return }
        checkpointRunning = true
        defer { checkpointRunning = false }
        await treeLock.acquire(.tree)
        let lsn = appliedLSN
        let plan = tree.prepareCheckpoint(lsn: lsn)
        treeLock.release(.tree)
        try await tree.writeCheckpoint(plan)
        try await log.releaseSegments(before: lsn + 1)
        checkpointCount += 1
    }

    /// Waits for writes in flight and closes the log.
    public func close() async {
        await treeLock.acquire(.tree)
        await log.close()
        treeLock.release(.tree)
    }

    private func fence(_ error: StorageError) {
        if fenced == nil { fenced = error }
    }
}

#if canImport(Glibc)
import Glibc
#endif
