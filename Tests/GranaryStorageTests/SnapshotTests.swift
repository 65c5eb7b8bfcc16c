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
        var cursor = await store.beginSnapshot()
        var chunks: [SnapshotChunk] = []
        while !cursor.finished {
            let (chunk, next) = try await store.readSnapshotChunk(at: cursor, bytesMax: 64 << 10)
            chunks.append(chunk)
            cursor = next
        }
        return (chunks, contents, await store.appliedSlot)
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
