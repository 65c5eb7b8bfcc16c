/// A replica's write-ahead log: records appended in order, each durable before its append
/// returns, in segment files on a `Storage` (see `WALFormat` for the layout).
///
/// Group commit: the append that finds no group in flight leads: the appends made in the
/// same loop turn join its group, and those made while a group is being written go down in
/// the next one, one write and one durable sync for all of them, written by the leader.
/// With one writer a record costs one durable write; with many, the cost is shared.
///
/// The log runs on one core: it is an actor whose executor is that core's reactor, so
/// its storage calls stay on the core. A failed write or sync fences the log: every
/// pending and later append fails with `.fenced`, and only a reopen (which recovers from
/// what is really on disk) goes on. It never retries and carries on, because after a
/// failed fsync the kernel may have dropped the data it could not write.
public actor WriteAheadLog<S: Storage> {
    private nonisolated let executor: any SerialExecutor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private struct Pending {
        var lsn: UInt64
        var kind: LogRecordKind
        var ballot: LogBallot
        var slot: UInt64
        var chosen: UInt64
        var payload: [UInt8]
        /// Nil for the leader's own record: the leader writes the group and learns its
        /// outcome directly.
        var waiter: UnsafeContinuation<WaitOutcome, Never>?
    }

    private struct LiveSegment {
        var sequence: UInt64
        var firstLSN: UInt64
        var name: String
    }

    private let storage: S
    private let options: WALOptions
    private let salt: UInt64
    private let staging: AlignedBytes
    private var segments: [LiveSegment]
    private var spares: [String]
    private var nextSequence: UInt64
    private var current: S.File?
    private var writeOffset: UInt64 = 0
    /// The LSN the next append gets.
    public private(set) var nextLSN: UInt64
    /// The highest slot of any entry appended (or held by the snapshot before the log).
    public private(set) var lastSlot: UInt64
    /// Every record below this LSN is durable.
    public private(set) var durableLSN: UInt64
    private var pending: [Pending] = []
    private var flushing = false
    /// `close` calls waiting for the group in flight to finish.
    private var flushWaiters: [UnsafeContinuation<Void, Never>] = []
    private var fenced: StorageError?

    /// Opens (or creates) the log in `storage` and starts a new segment for what comes
    /// next. Returns the log and, in LSN order, every record it holds from LSN
    /// `replayFrom` on (a checkpoint covers the ones before), and every state record. Slots
    /// up to `lastSlot` are taken (a snapshot holds them). Call it on the core whose
    /// reactor is `executor`.
    public static func open(
        storage: sending S, options: WALOptions = WALOptions(), executor: any SerialExecutor,
        replayFrom: UInt64 = 0, lastSlot: UInt64 = 0
    ) async throws(StorageError) -> (log: WriteAheadLog, records: [WALRecord]) {
        options.validate()
        var recovered = try await WALRecovery(storage: storage, options: options).recover(from: replayFrom)
        recovered.lastSlot = max(recovered.lastSlot, lastSlot)
        let log = WriteAheadLog(storage: storage, options: options, executor: executor, recovered: recovered)
        try await log.startSegment(firstLSN: recovered.nextLSN)
        return (log, recovered.records)
    }

    /// Reads every record of the log in `storage` without changing anything: for checks
    /// and tools. Throws `.corruption` where `open` would refuse to open.
    public static func readAll(storage: S, options: WALOptions = WALOptions()) async throws(StorageError) -> [WALRecord]
    {
        options.validate()
        var recovery = WALRecovery(storage: storage, options: options)
        recovery.repair = false
        return try await recovery.recover(from: 0).records
    }

    private init(
        storage: sending S, options: WALOptions, executor: any SerialExecutor, recovered: WALRecovery<S>.Result
    ) {
        self.storage = storage
        self.options = options
        self.executor = executor
        salt = recovered.salt ?? UInt64.random(in: 1...UInt64.max)
        staging = AlignedBytes(count: options.groupBytesMax)
        segments = recovered.segments.map {
            LiveSegment(sequence: $0.header.sequence, firstLSN: $0.header.firstLSN, name: $0.name)
        }
        spares = recovered.spares
        nextSequence = recovered.nextSequence
        nextLSN = recovered.nextLSN
        durableLSN = recovered.nextLSN
        lastSlot = recovered.lastSlot
    }

    /// Appends a record and returns its LSN once it is durable. For an entry, `ballot` and
    /// `slot` are the Paxos ballot and slot it is accepted under; for a state record, the
    /// promised ballot. `chosen` is the chosen prefix known now (`WALRecord`).
    public func append(
        _ payload: [UInt8], kind: LogRecordKind = .entry, ballot: LogBallot = .zero, slot: UInt64 = 0,
        chosen: UInt64 = 0
    ) async throws(StorageError) -> UInt64 {
        try await append([LogAppend(payload, kind: kind, ballot: ballot, slot: slot, chosen: chosen)]).lsn
    }

    /// Appends records together, in order (they go down in one group where they fit), and
    /// returns the last one's LSN once every one of them is durable. `gather: false` is for
    /// a caller that gathered them itself: the group goes down without waiting a loop turn
    /// for other appends to join.
    public func append(
        _ records: [LogAppend], gather: Bool = true
    ) async throws(StorageError) -> (lsn: UInt64, slot: UInt64) {
        precondition(
            !records.isEmpty && !records.contains { $0.kind == .legacy }, "this build writes version-2 records")
        return try await appendRecords(records, gather: gather)
    }

    /// Appends an entry in the slot after the last one, taken in LSN order (so a leader's
    /// entries are in slot order in the log), and returns its LSN and slot once durable.
    public func appendNext(
        _ payload: [UInt8], ballot: LogBallot, chosen: UInt64
    ) async throws(StorageError) -> (lsn: UInt64, slot: UInt64) {
        try await appendRecords([LogAppend(payload, kind: .entry, ballot: ballot, slot: nil, chosen: chosen)])
    }

    /// Queues `records` (a nil slot is the next one, taken with the LSN) and returns the last
    /// one's LSN and slot once all are durable.
    private func appendRecords(
        _ records: [LogAppend], gather: Bool = true
    ) async throws(StorageError) -> (lsn: UInt64, slot: UInt64) {
        if let fenced { throw .fenced(fenced.description) }
        for record in records where record.payload.count > options.recordPayloadBytesMax {
            throw .limitExceeded(
                "a log record of \(record.payload.count) bytes exceeds \(options.recordPayloadBytesMax)")
        }
        let lsn: UInt64
        var slot: UInt64 = 0
        if flushing {
            // A group is on its way to the disk: these records wait for the next one. The
            // LSNs are taken inside the body, together with the place in the queue: the
            // runtime may run other jobs of this actor before the body, and LSNs must
            // reach the log in order. The group may also have finished meanwhile: then
            // this append leads.
            let outcome = await withUnsafeContinuation { (waiter: UnsafeContinuation<WaitOutcome, Never>) in
                let leads = !flushing
                flushing = true
                (_, slot) = enqueue(records, waiter: leads ? nil : waiter)
                if leads { waiter.resume(returning: .lead(pending.last!.lsn)) }
            }
            switch outcome {
            case .done(let result): return (try result.get(), slot)
            case .lead(let assigned): lsn = assigned
            }
        } else {
            flushing = true
            (lsn, slot) = enqueue(records, waiter: nil)
        }
        // No group was in flight: this append leads. It lets the rest of this loop turn's
        // appends join (one yield: it runs again next turn), writes them as one group, and
        // every group that gathers while that write is on the disk, then returns. The
        // leader needs no hand-off to a flush task and back.
        if gather { await Task.yield() }
        await flushGroups()
        if durableLSN > lsn { return (lsn, slot) }
        throw fenced ?? .fenced("the log stopped before LSN \(lsn) was durable")
    }

    /// Gives the records their LSNs (and slots) and queues them; `waiter` learns the
    /// outcome of the last. Returns the last one's LSN and slot.
    private func enqueue(
        _ records: [LogAppend], waiter: UnsafeContinuation<WaitOutcome, Never>?
    ) -> (lsn: UInt64, slot: UInt64) {
        for (index, record) in records.enumerated() {
            pending.append(
                Pending(
                    lsn: takeLSN(), kind: record.kind, ballot: record.ballot,
                    slot: takeSlot(record.slot, kind: record.kind), chosen: record.chosen, payload: record.payload,
                    waiter: index == records.count - 1 ? waiter : nil))
        }
        return (pending.last!.lsn, pending.last!.slot)
    }

    /// Makes `slot` the last one taken (an installed snapshot holds every slot up to it,
    /// and supersedes any entry after it): the next entry appended without a slot takes
    /// the one after.
    public func restartSlots(after slot: UInt64) {
        lastSlot = slot
    }

    /// Segments wholly before `lsn` (a checkpoint covers them) become spares for reuse.
    public func releaseSegments(before lsn: UInt64) async throws(StorageError) {
        while segments.count >= 2 && segments[1].firstLSN <= lsn {
            let released = segments.removeFirst()
            if spares.count < options.sparesMax {
                let spare = WALFormat.spareName(released.sequence)
                try await storage.rename(released.name, to: spare)
                spares.append(spare)
            } else {
                try await storage.remove(released.name)
            }
        }
        try await storage.synchronizeDirectory()
    }

    /// The live segment count (for tests and metrics).
    public var segmentCount: Int { segments.count }

    /// Waits for appends in flight, then closes the current segment.
    public func close() async {
        if flushing {
            await withUnsafeContinuation { waiter in
                if flushing { flushWaiters.append(waiter) } else { waiter.resume() }
            }
        }
        await current?.close()
        current = nil
    }

    /// What a waiting append learns: its record is written (or failed), or it leads.
    enum WaitOutcome {
        case done(Result<UInt64, StorageError>)
        case lead(UInt64)
    }

    private func takeLSN() -> UInt64 {
        defer { nextLSN += 1 }
        return nextLSN
    }

    /// An entry's slot: `given`, or the next one. Other records have none.
    private func takeSlot(_ given: UInt64?, kind: LogRecordKind) -> UInt64 {
        guard kind == .entry else { return 0 }
        let slot = given ?? lastSlot + 1
        lastSlot = max(lastSlot, slot)
        return slot
    }

    // MARK: Writing groups

    private func flushGroups() async {
        while fenced == nil && !pending.isEmpty {
            var bytes = 0
            var count = 0
            for record in pending {
                let size = WALFormat.recordHeaderBytes + record.payload.count
                if count > 0 && bytes + size > options.groupBytesMax { break }
                bytes += size
                count += 1
            }
            let group = Array(pending.prefix(count))
            pending.removeFirst(count)
            precondition(
                group[0].lsn == durableLSN && group.last!.lsn == durableLSN + UInt64(count) - 1,
                "log records reach the disk in LSN order, without gaps")
            do throws(StorageError) {
                try await writeGroup(group, bytes: bytes)
                durableLSN = group.last!.lsn + 1
                for record in group { record.waiter?.resume(returning: .done(.success(record.lsn))) }
            } catch {
                fenced = error
                for record in group + pending { record.waiter?.resume(returning: .done(.failure(error))) }
                pending.removeAll()
            }
        }
        flushing = false
        for waiter in flushWaiters { waiter.resume() }
        flushWaiters.removeAll()
    }

    private func writeGroup(_ group: [Pending], bytes: Int) async throws(StorageError) {
        let blocks = AlignedBytes.roundUp(bytes)
        if writeOffset + UInt64(blocks) > UInt64(options.segmentBytes) {
            try await startSegment(firstLSN: group[0].lsn)
        }
        let seed = WALFormat.crcSeed(salt: salt)
        var offset = 0
        for record in group {
            let header = RecordHeader(
                kind: record.kind, lsn: record.lsn, ballot: record.ballot, slot: record.slot, chosen: record.chosen,
                groupFirstLSN: group[0].lsn)
            record.payload.withUnsafeBytes { payload in
                header.encode(payload: payload, seed: seed, into: staging.pointer + offset)
            }
            offset += WALFormat.recordHeaderBytes + record.payload.count
        }
        memset(staging.pointer + offset, 0, blocks - offset)
        try await writeDurably(staging.slice(0..<blocks), at: writeOffset)
        writeOffset += UInt64(blocks)
    }

    private func writeDurably(_ bytes: UnsafeMutableRawBufferPointer, at offset: UInt64) async throws(StorageError) {
        guard let current else { preconditionFailure("the log writes only with a current segment") }
        switch options.durability {
        case .writeThenDataSync:
            try await current.write(UnsafeRawBufferPointer(bytes), at: offset)
            try await current.synchronize()
        case .dataSyncedWrite:
            try await current.writeDurably(UnsafeRawBufferPointer(bytes), at: offset)
        }
    }

    /// Makes a new segment current, its first record to be `firstLSN`: a spare when one is
    /// left, a new file otherwise. Its header is durable, and its name in the directory,
    /// before any record goes into it.
    private func startSegment(firstLSN: UInt64) async throws(StorageError) {
        let sequence = nextSequence
        nextSequence += 1
        let source: String
        let file: S.File
        if let spare = spares.popLast() {
            source = spare
            file = try await storage.open(spare, create: false)
        } else {
            source = "wal-new.tmp"
            file = try await storage.open(source, create: true)
            try await file.allocate(from: 0, length: UInt64(options.segmentBytes))
            if options.zeroFillNewSegments {
                memset(staging.pointer, 0, staging.count)
                var offset = 0
                while offset < options.segmentBytes {
                    let length = min(staging.count, options.segmentBytes - offset)
                    try await file.write(UnsafeRawBufferPointer(staging.slice(0..<length)), at: UInt64(offset))
                    offset += length
                }
            }
        }
        SegmentHeader(sequence: sequence, firstLSN: firstLSN, salt: salt).encode(into: staging.pointer)
        try await file.write(UnsafeRawBufferPointer(staging.slice(0..<StorageLimits.blockSize)), at: 0)
        try await file.synchronize()
        let name = WALFormat.segmentName(sequence)
        try await storage.rename(source, to: name)
        try await storage.synchronizeDirectory()
        await current?.close()
        current = file
        writeOffset = UInt64(StorageLimits.blockSize)
        segments.append(LiveSegment(sequence: sequence, firstLSN: firstLSN, name: name))
    }
}

#if canImport(Glibc)
import Glibc
#endif
