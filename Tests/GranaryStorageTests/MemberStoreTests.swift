import GranaryIO
@testable import GranaryStorage
import GranaryStorageFaults
import Testing

/// A replica as a member of a group: what it persists (promise, accepted entries, chosen
/// prefix) comes back at open after a power cut, a later acceptance of a slot replaces an
/// earlier one, only chosen slots reach the tree, and checkpoints that recycle the log
/// keep the accepted entries the tree lacks.
@Suite struct MemberStoreTests {
    static func entry(_ slot: UInt64, round: UInt64, _ value: UInt8) -> ReplicaStore<FaultyStorage>.AcceptedEntry {
        .init(
            slot: slot, ballot: LogBallot(round: round, node: 2),
            command: .writes([.put(key: Array("key-\(slot)".utf8), value: [value])]))
    }

    static func logged(
        _ entry: ReplicaStore<FaultyStorage>.AcceptedEntry
    ) -> (slot: UInt64, ballot: LogBallot, payload: [UInt8]) {
        (entry.slot, entry.ballot, entry.command.encoded)
    }

    @Test func whatAMemberPersistsComesBackAfterAPowerCut() async throws {
        let (state, reopenedKeys) = try await onReactor { reactor in
            let storage = FaultyStorage(seed: 5)
            let (store, fresh) = try await ReplicaStore.openMember(
                storage: storage, options: PaxosLogTests.options(), executor: reactor)
            #expect(fresh == ReplicaStore<FaultyStorage>.MemberState())
            try await store.persist(
                promised: LogBallot(round: 3, node: 2),
                entries: (1...4).map { Self.logged(Self.entry($0, round: 3, 1)) },
                chosen: nil)
            // Slot 4 accepted again in a later ballot, with another value; slots 1 and 2 chosen.
            try await store.persist(
                promised: LogBallot(round: 5, node: 2), entries: [Self.logged(Self.entry(4, round: 5, 9))], chosen: 2)
            for slot in UInt64(1)...2 { try await store.apply(Self.entry(slot, round: 3, 1).command, slot: slot) }
            storage.powerCut()
            let (reopened, state) = try await ReplicaStore.openMember(
                storage: storage, options: PaxosLogTests.options(), executor: reactor)
            // Nothing applied at open: the tree has what its last checkpoint had (nothing).
            var keys: [[UInt8]] = []
            for slot in 1...4 where try await reopened.get(Array("key-\(slot)".utf8)) != nil {
                keys.append(Array("key-\(slot)".utf8))
            }
            return (state, keys)
        }
        #expect(state.promised == LogBallot(round: 5, node: 2))
        #expect(state.chosen == 2)
        #expect(state.snapshotSlot == 0)
        #expect(state.entries == [1, 2, 3].map { Self.entry($0, round: 3, 1) } + [Self.entry(4, round: 5, 9)])
        #expect(reopenedKeys.isEmpty)
    }

    /// Many checkpoints recycle the log's segments while slot 2 stays accepted but not
    /// chosen: it must survive them, and the applied slots come back from the tree.
    @Test func checkpointsKeepAcceptedEntriesTheTreeLacks() async throws {
        let (state, value) = try await onReactor { reactor in
            let storage = FaultyStorage(seed: 6)
            let (store, _) = try await ReplicaStore.openMember(
                storage: storage, options: PaxosLogTests.options(), executor: reactor)
            try await store.persist(
                promised: LogBallot(round: 1, node: 2), entries: [Self.logged(Self.entry(1, round: 1, 1))], chosen: 1)
            try await store.apply(Self.entry(1, round: 1, 1).command, slot: 1)
            try await store.persist(promised: nil, entries: [Self.logged(Self.entry(2, round: 1, 2))], chosen: nil)
            // A lagging slot 2, while slots 3... are accepted, chosen and applied (as a
            // leader's later slots may be, once a peer fills the gap) and checkpointed.
            for round in 0..<40 {
                let big: ReplicaStore<FaultyStorage>.AcceptedEntry = .init(
                    slot: 3 + UInt64(round), ballot: LogBallot(round: 1, node: 2),
                    command: .writes([.put(key: Array("filler".utf8), value: [UInt8](repeating: 7, count: 6000))]))
                try await store.persist(promised: nil, entries: [Self.logged(big)], chosen: nil)
                if round % 8 == 0 { try await store.checkpoint() }
            }
            #expect(await store.checkpointCount >= 5)
            storage.powerCut()
            let (reopened, state) = try await ReplicaStore.openMember(
                storage: storage, options: PaxosLogTests.options(), executor: reactor)
            return (state, try await reopened.get(Array("key-1".utf8)))
        }
        #expect(state.snapshotSlot == 1)
        #expect(state.entries.map(\.slot) == Array(2...42))
        #expect(state.entries.first?.command == Self.entry(2, round: 1, 2).command)
        #expect(value == [1])
    }
}
