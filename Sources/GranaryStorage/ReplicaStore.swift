import GranaryIO

/// One replica's durable key-value state: a write-ahead log in front of a B-tree, in one
/// directory, on one core. The log is the replica's Paxos log (`WALFormat`) and the tree
/// its state machine.
///
/// As a group of one (all there is until replication), the store leads alone: at open it
/// promises a ballot above every one in its log (a state record, durable before it serves)
/// and every entry it recovers is chosen, since its own acceptance was a majority. A write
/// is accepted in the next slot (one entry record, which may carry several keys' writes,
/// applied together), and once durable it is chosen: it is applied to the tree in slot
/// order, then acknowledged. Once `write` returns, the write survives a crash.
///
/// Checkpoints run by themselves when the tree's dirty pages or the log's segments pass
/// their bounds. A checkpoint is the snapshot: the tree made durable with the slot it has
/// applied through (kept in the tree itself, under `appliedSlotKey`) and the log LSN it
/// covers; a state record then carries the promise past the segments the checkpoint lets
/// the log recycle. Opening recovers: the tree as of its last checkpoint, then every log
/// record after it, replayed.
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
        /// The node id in this replica's ballots.
        public var node: UInt32 = 1
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

    private nonisolated let executor: any SerialExecutor & TaskExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    let tree: BTree<S>
    let log: WriteAheadLog<S>
    private let options: Options
    /// Every record up to here is applied to the tree (as a group member: is durable).
    public internal(set) var appliedLSN: UInt64
    /// Every slot up to here is applied to the tree.
    public internal(set) var appliedSlot: UInt64
    /// The ballot this replica promised, and leads in.
    public internal(set) var promised: LogBallot
    /// As a group member (`openMember`): the LSN of each accepted entry not yet applied, by
    /// slot. The log keeps them across checkpoints: they are not in the tree.
    var unappliedEntryLSNs: [UInt64: UInt64] = [:]
    /// As a group member: the chosen prefix as last persisted.
    var persistedChosen: UInt64 = 0
    private var logged: [UInt64: Logged] = [:]  // durable, waiting for earlier LSNs
    private var applyWaiters: [UInt64: [UnsafeContinuation<Void, Never>]] = [:]
    private var applying = false
    /// The tree lock: tree operations run one at a time, in arrival order.
    let treeLock = FIFOLocks<TreeLock>()
    enum TreeLock { case tree }
    private var checkpointRunning = false
    /// A checkpoint is on its way, started by `checkpointSoonIfDue`.
    private var checkpointStarting = false
    private var writesSinceLogCheck = 256  // so that open checks the log at once
    /// The image reads in progress (`snapshotEntries`), each with the keys written since it
    /// began, and the installations begun since open (each replaces the tree).
    var imageReads: [Int: Set<[UInt8]>] = [:]
    var nextImageRead = 0
    var installs = 0
    /// The failure that fenced the store, if one did.
    public internal(set) var fenced: StorageError?
    /// Checkpoints completed since open (for tests and metrics).
    public private(set) var checkpointCount = 0

    /// A durable record waiting for its turn to apply: an entry's writes, or a state
    /// record, which changes nothing in the tree.
    private enum Logged {
        case entry(slot: UInt64, writes: [StoreWrite])
        case state
    }

    /// The tree key under which a checkpoint records the slot it has applied through: the
    /// snapshot's slot. Table id 0 holds the node's own records.
    public static var appliedSlotKey: [UInt8] { [0, 0, 0, 0] + Array("replica/applied-slot".utf8) }

    /// Opens the replica in `storage`, recovering it, and leads it as a group of one. Call
    /// on the core whose reactor is `executor`. A long log is checkpointed at once, so the
    /// next recovery is short; so is a log written by an older build (version 1), which is
    /// thereby converted.
    public static func open(
        storage: S, options: Options = Options(), executor: any SerialExecutor & TaskExecutor
    ) async throws(StorageError) -> ReplicaStore {
        let tree = try await BTree.open(storage: storage, options: options.tree)
        let snapshotSlot = try await appliedSlot(in: tree)
        let (log, records) = try await WriteAheadLog.open(
            storage: storage, options: options.log, executor: executor, replayFrom: tree.checkpointLSN + 1,
            lastSlot: snapshotSlot)
        let replayed = try await replay(records, into: tree, snapshotSlot: snapshotSlot)
        // Phase 1 of a group of one: a ballot above any this log has seen, durable first.
        let ballot = LogBallot(round: replayed.promised.round + 1, node: options.node)
        let stateLSN: UInt64
        do throws(StorageError) {
            stateLSN = try await log.append([], kind: .state, ballot: ballot, chosen: replayed.slot)
        } catch {
            await log.close()
            throw error
        }
        let store = ReplicaStore(
            tree: tree, log: log, options: options, executor: executor, appliedLSN: stateLSN,
            appliedSlot: replayed.slot, promised: ballot)
        if replayed.legacy > 0 { try await store.checkpoint() }
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
        _ = try await replay(
            records.filter { $0.lsn > tree.checkpointLSN }, into: tree, snapshotSlot: appliedSlot(in: tree))
        return tree
    }

    /// The slot the tree's checkpoint holds applied (0 for a tree written before slots).
    static func appliedSlot(in tree: BTree<S>) async throws(StorageError) -> UInt64 {
        guard let stored = try await tree.get(appliedSlotKey) else { return 0 }
        guard stored.count == 8 else {
            throw .corruption(file: "btree", offset: 0, detail: "the applied slot record is \(stored.count) bytes")
        }
        return stored.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Applies the records after the tree's checkpoint in LSN order: version-1 records as
    /// store operations, entries in slot order (as a group of one writes them, each the
    /// slot after the last). Returns the highest promise seen, the last slot applied and
    /// how many version-1 records there were.
    private static func replay(
        _ records: [WALRecord], into tree: BTree<S>, snapshotSlot: UInt64
    ) async throws(StorageError) -> (promised: LogBallot, slot: UInt64, legacy: Int) {
        var promised = LogBallot.zero
        var slot = snapshotSlot
        var legacy = 0
        for record in records {
            promised = max(promised, record.ballot)
            switch record.kind {
            case .state:
                continue
            case .legacy:
                guard let write = StoreWrite.decodeLegacy(record.payload) else {
                    throw .corruption(
                        file: "wal", offset: 0, detail: "log record \(record.lsn) is not a store operation")
                }
                try await apply([write], to: tree)
                legacy += 1
            case .entry:
                guard record.slot > slot else { continue }  // applied before the snapshot
                guard record.slot == slot + 1 else {
                    throw .corruption(
                        file: "wal", offset: 0,
                        detail:
                            "log record \(record.lsn) holds slot \(record.slot) after slot \(slot): slots are missing")
                }
                guard let writes = StoreWrite.decodeEntry(record.payload) else {
                    throw .corruption(file: "wal", offset: 0, detail: "log record \(record.lsn) is not an entry")
                }
                try await Self.apply(writes, to: tree)
                slot = record.slot
            }
        }
        return (promised, slot, legacy)
    }

    init(
        tree: BTree<S>, log: WriteAheadLog<S>, options: Options, executor: any SerialExecutor & TaskExecutor,
        appliedLSN: UInt64,
        appliedSlot: UInt64, promised: LogBallot
    ) {
        self.tree = tree
        self.log = log
        self.options = options
        self.executor = executor
        self.appliedLSN = appliedLSN
        self.appliedSlot = appliedSlot
        self.promised = promised
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
        try await write([.put(key: key, value: value)])
    }

    public func delete(_ key: [UInt8]) async throws(StorageError) {
        try await write([.delete(key: key)])
    }

    /// The most bytes of writes one `write` may carry (its entry record's payload).
    public nonisolated var writeBytesMax: Int { options.log.recordPayloadBytesMax }

    /// Applies `writes` together, in one slot: durable and visible, all of them, when it
    /// returns, and after a crash either all or none. Throws `.limitExceeded`, having
    /// written nothing, when a key is too long or they take more than `writeBytesMax`.
    public func write(_ writes: [StoreWrite]) async throws(StorageError) {
        if let fenced { throw .fenced(fenced.description) }
        for case .put(let key, _) in writes where key.count > BTreePage.keyBytesMax {
            throw .limitExceeded("a key of \(key.count) bytes exceeds \(BTreePage.keyBytesMax)")
        }
        let payload = StoreWrite.encodeEntry(writes)
        guard payload.count <= writeBytesMax else {
            throw .limitExceeded("a log record of \(payload.count) bytes exceeds \(writeBytesMax)")
        }
        let lsn: UInt64, slot: UInt64
        do throws(StorageError) {
            (lsn, slot) = try await log.appendNext(payload, ballot: promised, chosen: appliedSlot)
        } catch {
            fence(error)
            throw error
        }
        // A group of one's acceptance is a majority: the slot is chosen once durable.
        logged[lsn] = .entry(slot: slot, writes: writes)
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

    /// Applies durable records in LSN order, one at a time, while the next one is here.
    private func applyLogged() async {
        guard !applying else { return }
        applying = true
        defer { applying = false }
        while let record = logged.removeValue(forKey: appliedLSN + 1) {
            if case .entry(let slot, let writes) = record {
                precondition(slot == appliedSlot + 1, "a group of one applies its slots in order")
                await treeLock.acquire(.tree)
                do throws(StorageError) {
                    try await Self.apply(writes, to: tree)
                    for write in writes { noteWritten(write.key) }
                } catch {
                    // The record is durable but the tree could not take it: stop serving, so
                    // the tree never answers without a write the log holds. A reopen replays it.
                    fence(error)
                }
                treeLock.release(.tree)
                appliedSlot = slot  // entries are in slot order in the log (`appendNext`)
            }
            appliedLSN += 1
            for waiter in applyWaiters.removeValue(forKey: appliedLSN) ?? [] { waiter.resume() }
        }
    }

    private static func apply(_ writes: [StoreWrite], to tree: BTree<S>) async throws(StorageError) {
        for write in writes {
            switch write {
            case .put(let key, let value): try await tree.put(key, value)
            case .delete(let key): try await tree.delete(key)
            }
        }
    }

    // MARK: Checkpoints

    func checkpointIfDue() async {
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

    /// Starts a checkpoint, if one is due, as a task of its own on this store's executor:
    /// whoever applied the write that made it due goes on meanwhile. A failed checkpoint
    /// fences the store, so the next operation reports it.
    func checkpointSoonIfDue() {
        guard !checkpointRunning, !checkpointStarting, fenced == nil else { return }
        guard tree.dirtyBytes >= options.checkpointDirtyPages * BTreePage.size || writesSinceLogCheck >= 255 else {
            writesSinceLogCheck += 1
            return
        }
        checkpointStarting = true
        Task(executorPreference: executor) { await self.checkpointStarted() }
    }

    private func checkpointStarted() async {
        await checkpointIfDue()
        checkpointStarting = false
    }

    /// Makes the tree durable up to the last applied write, with the slot it holds, and
    /// recycles the log behind it once a state record past it carries the promise.
    public func checkpoint() async throws(StorageError) {
        guard !checkpointRunning else { return }
        checkpointRunning = true
        defer { checkpointRunning = false }
        await treeLock.acquire(.tree)
        // The log from the first accepted entry not yet applied is kept: the tree lacks it.
        let lsn = min(appliedLSN, (unappliedEntryLSNs.values.min() ?? .max) - 1)
        let plan: BTree<S>.CheckpointPlan
        do throws(StorageError) {
            try await tree.put(
                Self.appliedSlotKey, (0..<8).map { UInt8(truncatingIfNeeded: appliedSlot >> (56 - 8 * $0)) })
            plan = tree.prepareCheckpoint(lsn: lsn)
        } catch {
            treeLock.release(.tree)
            throw error
        }
        treeLock.release(.tree)
        try await tree.writeCheckpoint(plan)
        let stateLSN = try await log.append([], kind: .state, ballot: promised, chosen: appliedSlot)
        logged[stateLSN] = .state
        await applyLogged()
        try await log.releaseSegments(before: lsn + 1)
        checkpointCount += 1
    }

    /// Waits for writes in flight and closes the log.
    public func close() async {
        await treeLock.acquire(.tree)
        await log.close()
        treeLock.release(.tree)
    }

    func fence(_ error: StorageError) {
        if fenced == nil { fenced = error }
    }
}

#if canImport(Glibc)
import Glibc
#endif
