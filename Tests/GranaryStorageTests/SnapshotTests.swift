import GranaryIO
@testable import GranaryStorage
import GranaryStorageFaults
import Testing

/// A replica's snapshot read out as checksummed chunks and installed in another: the
/// receiver ends with the sender's keys and slot, keeps them across a power cut, and
/// refuses a damaged, foreign or out-of-order chunk without changing anything.
@Suite struct SnapshotTests {
    static func options(node: UInt32) -> ReplicaStore<FaultyStorage>.Options {
        var options = PaxosLogTests.options()
        options.node = node
        return options
    }

    static func key(_ index: Int) -> [UInt8] { Array("key-\(index)".utf8) }

    /// A sender with 1,500 keys of mixed sizes, 100 of them deleted, and its chunks.
    static func sent(
        reactor: Reactor
    ) async throws -> (chunks: [SnapshotChunk], contents: [[UInt8]: [UInt8]], slot: UInt64) {
        let store = try await ReplicaStore.open(
            storage: FaultyStorage(seed: 21), options: options(node: 1), executor: reactor)
        for index in 0..<1500 {
            try await store.put(key(index), [UInt8](repeating: UInt8(index % 251), count: 10 + index % 3000))
        }
        for index in stride(from: 0, to: 1500, by: 15) { try await store.delete(key(index)) }
        var contents: [[UInt8]: [UInt8]] = [:]
        for (key, value) in try await store.scan(from: Array("key".utf8), limit: 2000) { contents[key] = value }
        let (slot, entries) = try #require(try await store.snapshotEntries())
        return (ReplicaStore<FaultyStorage>.chunks(of: entries, slot: slot, bytesMax: 64 << 10), contents, slot)
    }

    /// Writes applied while the image is read (the read lets them in between its batches)
    /// are in it exactly as of its slot: each key as the writes through that slot left it.
    @Test func anImageReadDuringWritesIsTheTreeAsOfItsSlot() async throws {
        let (reads, overlapped, exact) = try await onReactor { reactor in
            let store = try await ReplicaStore.open(
                storage: FaultyStorage(seed: 24), options: Self.options(node: 1), executor: reactor)
            var initial: [[UInt8]: [UInt8]] = [:]
            for index in 0..<2000 {
                initial[Self.key(index)] = [UInt8](repeating: UInt8(index % 251), count: 500 + index % 2000)
                try await store.put(Self.key(index), initial[Self.key(index)]!)
            }
            let first = await store.appliedSlot
            // Each write takes the next slot: puts over existing keys, new keys, deletes.
            let writes: [StoreWrite] = (0..<2000).map { step in
                let key = Self.key((step * 7919) % 2600)
                return step % 5 == 0 ? .delete(key: key) : .put(key: key, value: [UInt8(step % 256), 1, 2])
            }
            let writer = Task(executorPreference: reactor) {
                for write in writes { try await store.write([write]) }
            }
            // Reads one after another while the writes go on; each is checked.
            var reads = 0, overlapped = 0, exact = 0
            while await store.appliedSlot < first + UInt64(writes.count) && reads < 1000 {
                let before = await store.appliedSlot
                let read = try #require(try await store.snapshotEntries(batchBytes: 1))
                reads += 1
                if read.slot > before { overlapped += 1 }
                var expected = initial
                for write in writes.prefix(Int(read.slot - first)) {
                    switch write {
                    case .put(let key, let value): expected[key] = value
                    case .delete(let key): expected[key] = nil
                    }
                }
                let sorted =
                    read.entries.map(\.key) == read.entries.map(\.key).sorted { $0.lexicographicallyPrecedes($1) }
                if sorted && Dictionary(uniqueKeysWithValues: read.entries.map { ($0.key, $0.value) }) == expected {
                    exact += 1
                }
            }
            try await writer.value
            return (reads, overlapped, exact)
        }
        #expect(overlapped > 0)  // writes were applied while a read was under way
        #expect(exact == reads)
    }

    @Test func aSnapshotStreamInstallsTheSendersStateAndSlot() async throws {
        let (chunkCount, slot, installed, reopened, nextSlot, expected) = try await onReactor { reactor in
            let (chunks, contents, slot) = try await Self.sent(reactor: reactor)
            let storage = FaultyStorage(seed: 22)
            let receiver = try await ReplicaStore.open(
                storage: storage, options: Self.options(node: 2), executor: reactor)
            for index in 0..<50 { try await receiver.put(Self.key(9000 + index), [1]) }  // replaced by the install
            var cursor = try await receiver.beginInstall(slot: chunks[0].slot)
            for chunk in chunks { cursor = try await receiver.installChunk(chunk, at: cursor) }
            try await receiver.finishInstall(cursor)
            let installed = try await receiver.scan(from: Array("key".utf8), limit: 3000)
            await receiver.close()
            storage.powerCut()
            let again = try await ReplicaStore.open(storage: storage, options: Self.options(node: 2), executor: reactor)
            let reopened = try await again.scan(from: Array("key".utf8), limit: 3000)
            try await again.put(Self.key(1), [2])
            return (chunks.count, slot, installed.count, reopened, await again.appliedSlot, contents)
        }
        #expect(chunkCount > 10)
        #expect(slot == 1600)
        #expect(installed == expected.count)
        #expect(Dictionary(uniqueKeysWithValues: reopened.map { ($0.key, $0.value) }) == expected)
        #expect(nextSlot == 1601)  // the write after the snapshot took the slot after it
    }

    @Test func aDamagedForeignOrMisplacedChunkIsRefused() async throws {
        let refusals = try await onReactor { reactor in
            let (chunks, _, _) = try await Self.sent(reactor: reactor)
            let receiver = try await ReplicaStore.open(
                storage: FaultyStorage(seed: 23), options: Self.options(node: 2), executor: reactor)
            let start = try await receiver.beginInstall(slot: chunks[0].slot)
            var flipped = chunks[1]
            flipped.payload[flipped.payload.count / 2] ^= 1
            var foreign = chunks[0]
            foreign.slot += 1
            foreign.checksum = foreign.computedChecksum
            let afterFirst = try await receiver.installChunk(chunks[0], at: start)
            var refusals: [String] = []
            for (chunk, cursor) in [
                (flipped, afterFirst), (foreign, start), (chunks[2], afterFirst), (chunks[0], afterFirst),
            ] {
                do throws(StorageError) {
                    _ = try await receiver.installChunk(chunk, at: cursor)
                    refusals.append("accepted")
                } catch {
                    if case .corruption = error { refusals.append("refused") } else { refusals.append("\(error)") }
                }
            }
            do throws(StorageError) {
                try await receiver.finishInstall(afterFirst)
                refusals.append("finished early")
            } catch {
                refusals.append("refused")
            }
            return refusals
        }
        #expect(refusals == Array(repeating: "refused", count: 5))
    }
}
