/// A replica as one member of a replication group of several: the acceptor's durable state
/// for a Paxos core that runs elsewhere (GranaryReplication's driver), which decides what
/// is promised, accepted and chosen. The store persists it (`persist`), applies chosen
/// slots in order when told (`apply`), and gives it back at open (`openMember`).
///
/// Accepting and applying are separate: an accepted entry is only logged; the tree takes it
/// once chosen. A checkpoint is still the snapshot, but the log behind it is kept from the
/// first accepted entry the tree lacks, so that no acceptance is lost with a segment.
extension ReplicaStore {
    /// An accepted entry, as the log holds it.
    public struct AcceptedEntry: Sendable, Equatable {
        public var slot: UInt64
        public var ballot: LogBallot
        public var command: LogCommand

        public init(slot: UInt64, ballot: LogBallot, command: LogCommand) {
            self.slot = slot
            self.ballot = ballot
            self.command = command
        }
    }

    /// What a member recovers: its promise, the chosen prefix, the snapshot (the tree's
    /// applied slot, and the membership its tree holds, if any change was applied) and the
    /// entries accepted after the snapshot, in slot order (each slot's latest).
    public struct MemberState: Sendable, Equatable {
        public var promised = LogBallot.zero
        public var chosen: UInt64 = 0
        public var snapshotSlot: UInt64 = 0
        public var membership: [UInt8]?
        public var entries: [AcceptedEntry] = []
    }

    /// The tree key of the membership in force after the applied slot.
    public static var membershipKey: [UInt8] { [0, 0, 0, 0] + Array("replica/membership".utf8) }

    /// Opens the replica in `storage` as a group member, changing nothing in the tree: the
    /// caller's Paxos core decides what is chosen, and hands the chosen entries after the
    /// snapshot back to `apply`.
    public static func openMember(
        storage: S, options: Options = Options(), executor: any SerialExecutor & TaskExecutor
    ) async throws(StorageError) -> (store: ReplicaStore, state: MemberState) {
        let tree = try await BTree.open(storage: storage, options: options.tree)
        var state = MemberState()
        state.snapshotSlot = try await appliedSlot(in: tree)
        state.chosen = state.snapshotSlot
        state.membership = try await tree.get(membershipKey)
        let (log, records) = try await WriteAheadLog.open(
            storage: storage, options: options.log, executor: executor, replayFrom: tree.checkpointLSN + 1,
            lastSlot: state.snapshotSlot)
        if records.contains(where: { $0.kind == .legacy }) {
            // A version-1 log (a node of one, before slots): converted by opening it as one
            // (see `open`), which checkpoints its records away.
            await log.close()
            try await open(storage: storage, options: options, executor: executor).close()
            return try await openMember(storage: storage, options: options, executor: executor)
        }
        var entries: [UInt64: AcceptedEntry] = [:]
        var lsns: [UInt64: UInt64] = [:]
        do throws(StorageError) {
            for record in records {
                state.promised = max(state.promised, record.ballot)
                state.chosen = max(state.chosen, record.chosen)
                switch record.kind {
                case .state:
                    continue
                case .legacy:
                    preconditionFailure("converted above")
                case .entry:
                    guard record.slot > state.snapshotSlot else { continue }
                    guard let command = LogCommand(decoding: record.payload) else {
                        throw .corruption(file: "wal", offset: 0, detail: "log record \(record.lsn) is not an entry")
                    }
                    // In LSN order: a later acceptance of a slot replaces an earlier one.
                    entries[record.slot] = AcceptedEntry(slot: record.slot, ballot: record.ballot, command: command)
                    lsns[record.slot] = record.lsn
                }
            }
        } catch {
            await log.close()
            throw error
        }
        state.entries = entries.values.sorted { $0.slot < $1.slot }
        let store = ReplicaStore(
            tree: tree, log: log, options: options, executor: executor, appliedLSN: await log.nextLSN - 1,
            appliedSlot: state.snapshotSlot, promised: state.promised)
        await store.adopt(unappliedEntryLSNs: lsns, chosen: state.chosen)
        return (store, state)
    }

    private func adopt(unappliedEntryLSNs lsns: [UInt64: UInt64], chosen: UInt64) {
        unappliedEntryLSNs = lsns
        persistedChosen = chosen
    }

    /// Makes durable, in one group where it fits and in this order: a new promise, accepted
    /// entries (each its slot, ballot and `LogCommand` encoding), a new chosen prefix.
    /// Returns once all of it is on disk.
    public func persist(
        promised newPromise: LogBallot?, entries: [(slot: UInt64, ballot: LogBallot, payload: [UInt8])],
        chosen: UInt64?
    ) async throws(StorageError) {
        if let fenced { throw .fenced(fenced.description) }
        let ballot = newPromise ?? promised
        var records: [LogAppend] = []
        if newPromise != nil {
            records.append(LogAppend([], kind: .state, ballot: ballot, slot: nil, chosen: persistedChosen))
        }
        for entry in entries {
            records.append(
                LogAppend(entry.payload, kind: .entry, ballot: entry.ballot, slot: entry.slot, chosen: persistedChosen))
        }
        if let chosen { records.append(LogAppend([], kind: .state, ballot: ballot, slot: nil, chosen: chosen)) }
        guard !records.isEmpty else { return }
        let last: UInt64
        do throws(StorageError) {
            last = try await log.append(records, gather: false).lsn
        } catch {
            fence(error)
            throw error
        }
        // One append's records take consecutive LSNs.
        let first = last + 1 - UInt64(records.count)
        for (index, entry) in entries.enumerated() where entry.slot > appliedSlot {
            unappliedEntryLSNs[entry.slot] = first + UInt64(index + (newPromise == nil ? 0 : 1))
        }
        promised = ballot
        if let chosen { persistedChosen = max(persistedChosen, chosen) }
        appliedLSN = max(appliedLSN, last)
    }

    /// Applies the chosen entry of the slot after the applied one to the tree. A membership
    /// is kept under `membershipKey`.
    public func apply(_ command: LogCommand, slot: UInt64) async throws(StorageError) {
        if let fenced { throw .fenced(fenced.description) }
        precondition(slot == appliedSlot + 1, "chosen slots are applied in order, each once")
        await treeLock.acquire(.tree)
        do throws(StorageError) {
            switch command {
            case .noop: break
            case .writes(let writes):
                for write in writes {
                    switch write {
                    case .put(let key, let value): try await tree.put(key, value)
                    case .delete(let key): try await tree.delete(key)
                    }
                    noteWritten(write.key)
                }
            case .membership(let bytes):
                try await tree.put(Self.membershipKey, bytes)
                noteWritten(Self.membershipKey)
            }
        } catch {
            treeLock.release(.tree)
            // Chosen and durable in the log, but not in the tree: stop serving (see `write`).
            fence(error)
            throw error
        }
        treeLock.release(.tree)
        appliedSlot = slot
        unappliedEntryLSNs[slot] = nil
        checkpointSoonIfDue()
    }

    /// A log-only member's compaction: its log starts after `slot` (every replica with a
    /// state machine has the slots before), under `membership`. The tree holds only these.
    public func startLog(after slot: UInt64, membership: [UInt8]) async throws(StorageError) {
        if let fenced { throw .fenced(fenced.description) }
        await treeLock.acquire(.tree)
        do throws(StorageError) {
            try await tree.put(Self.membershipKey, membership)
            noteWritten(Self.membershipKey)
        } catch {
            treeLock.release(.tree)
            throw error
        }
        treeLock.release(.tree)
        forgetEntries(through: slot)
        try await checkpoint()
    }

    /// The snapshot's slots are no longer the log's to keep.
    func forgetEntries(through slot: UInt64) {
        appliedSlot = max(appliedSlot, slot)
        unappliedEntryLSNs = unappliedEntryLSNs.filter { $0.key > slot }
    }
}
