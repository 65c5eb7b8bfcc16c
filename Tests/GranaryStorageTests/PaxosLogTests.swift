import Glibc
import GranaryIO
@testable import GranaryStorage
import GranaryStorageFaults
import Testing

/// The log as a group of one's Paxos log: entries in contiguous slots under the promised
/// ballot, a promise that only rises (across reopens and recycled segments), writes of
/// several keys that land together or not at all, and a version-1 log converted at open.
@Suite struct PaxosLogTests {
    static func options() -> ReplicaStore<FaultyStorage>.Options {
        var options = ReplicaStore<FaultyStorage>.Options()
        options.log = smallLog
        options.node = 4
        options.checkpointDirtyPages = 16
        options.checkpointLogSegments = 2
        return options
    }

    static func key(_ name: String) -> [UInt8] { Array(name.utf8) }

    @Test func thePromiseRisesAtEveryOpenAndOutlivesRecycledSegments() async throws {
        let (promises, slots, records) = try await onReactor { reactor in
            let storage = FaultyStorage(seed: 11)
            var promises: [LogBallot] = []
            var slots: [UInt64] = []
            for round in 0..<3 {
                let store = try await ReplicaStore.open(storage: storage, options: Self.options(), executor: reactor)
                promises.append(await store.promised)
                // Enough to roll several segments; then a checkpoint that covers all of it,
                // so that the segments holding this open's state record are recycled.
                for index in 0..<400 {
                    try await store.put(Self.key("k\(index % 50)"), [UInt8](repeating: UInt8(round), count: 500))
                }
                try await store.checkpoint()
                slots.append(await store.appliedSlot)
                await store.close()
                storage.powerCut()
            }
            let records = try await WriteAheadLog.readAll(storage: storage, options: smallLog)
            return (promises, slots, records)
        }
        #expect(promises == (1...3).map { LogBallot(round: UInt64($0), node: 4) })
        #expect(slots == [400, 800, 1200])
        // The entries still in the log: contiguous slots, each in the ballot promised when
        // it was written, and each knowing a chosen prefix below itself.
        let entries = records.filter { $0.kind == .entry }
        #expect(!entries.isEmpty)
        #expect(zip(entries, entries.dropFirst()).allSatisfy { $1.slot == $0.slot + 1 && $1.ballot >= $0.ballot })
        #expect(entries.allSatisfy { $0.chosen < $0.slot && $0.ballot.node == 4 })
        #expect(entries.last?.slot == 1200)
    }

    /// Writers each write batches of eight keys that no other batch touches, while power
    /// is cut at a random point; after each reopen a batch is all there or not there at
    /// all, and every acknowledged batch is all there.
    @Test(arguments: 0..<10)
    func aWriteOfSeveralKeysIsAllOrNothing(seed: UInt64) async throws {
        let failures = try await onReactor { reactor in
            let storage = FaultyStorage(seed: seed)
            var random = SplitMix64(seed: seed &+ 77)
            let batches = BatchLedger()
            var failures: [String] = []
            for round in 0..<4 {
                let store = try await ReplicaStore.open(storage: storage, options: Self.options(), executor: reactor)
                for batch in batches.attempted.sorted() {
                    var present = 0
                    for index in 0..<8 where try await store.get(Self.key("b\(batch)/\(index)")) != nil { present += 1 }
                    if present != 0 && present != 8 { failures.append("round \(round): batch \(batch) has \(present)") }
                    if batches.acknowledged.contains(batch) && present != 8 {
                        failures.append("round \(round): acknowledged batch \(batch) has \(present)")
                    }
                }
                storage.cutPower(afterOperations: 10 + Int(random.next() % 150))
                let size = 100 + Int(random.next() % 3000)
                await withTaskGroup(of: Void.self) { group in
                    for writer in 0..<4 {
                        group.addTask {
                            for index in 0..<30 {
                                let batch = round * 1000 + writer * 100 + index
                                batches.attempted.insert(batch)
                                let writes = (0..<8).map {
                                    StoreWrite.put(
                                        key: Self.key("b\(batch)/\($0)"), value: [UInt8](repeating: 7, count: size))
                                }
                                do throws(StorageError) {
                                    try await store.write(writes)
                                    batches.acknowledged.insert(batch)
                                } catch {
                                    return
                                }
                            }
                        }
                    }
                }
                storage.powerCut()
            }
            return failures
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
    }

    @Test func aVersionOneLogIsReadAndConvertedAtOpen() async throws {
        let (values, versions, promised, again) = try await onReactor { reactor in
            let storage = FaultyStorage(seed: 3)
            var legacy: [[UInt8]] = (0..<10).map { index in
                Self.legacyPut(Self.key("k\(index)"), Array("v\(index)".utf8))
            }
            legacy.append([2, 2, 0, 0, 0] + Self.key("k3"))  // delete k3
            try await Self.writeVersionOneLog(legacy, to: storage)
            let store = try await ReplicaStore.open(storage: storage, options: Self.options(), executor: reactor)
            var values: [String?] = []
            for index in 0..<10 {
                values.append(try await store.get(Self.key("k\(index)")).map { String(decoding: $0, as: UTF8.self) })
            }
            let versions = try storage.list().filter { WALFormat.sequence(ofSegmentNamed: $0) != nil }.map { name in
                storage.images[name]!.volatile.withUnsafeBytes { SegmentHeader.decode($0.baseAddress!)?.version }
            }
            try await store.put(Self.key("after"), [1])
            await store.close()
            storage.powerCut()
            let reopened = try await ReplicaStore.open(storage: storage, options: Self.options(), executor: reactor)
            let k9 = try await reopened.get(Self.key("k9"))
            let after = try await reopened.get(Self.key("after"))
            let again = k9 != nil && after == [1]
            return (values, versions, await reopened.promised, again)
        }
        #expect(values == (0..<10).map { $0 == 3 ? nil : "v\($0)" })
        #expect(!versions.isEmpty && versions.allSatisfy { $0 == 2 })  // the version-1 segment is gone
        #expect(promised == LogBallot(round: 2, node: 4))
        #expect(again)
    }

    static func legacyPut(_ key: [UInt8], _ value: [UInt8]) -> [UInt8] {
        [1] + withUnsafeBytes(of: UInt32(key.count).littleEndian) { Array($0) } + key + value
    }

    /// A log as a build before the Paxos format wrote it: one version-1 segment holding
    /// `payloads` as one group.
    static func writeVersionOneLog(_ payloads: [[UInt8]], to storage: FaultyStorage) async throws {
        let salt: UInt64 = 0x1234_5678_9ABC_DEF0
        let segment = AlignedBytes(count: smallLog.segmentBytes)
        memset(segment.pointer, 0, segment.count)
        SegmentHeader(sequence: 1, firstLSN: 1, salt: salt, version: 1).encode(into: segment.pointer)
        var offset = StorageLimits.blockSize
        for (index, payload) in payloads.enumerated() {
            let header = RecordHeader(version: 1, kind: .legacy, lsn: UInt64(index + 1), groupFirstLSN: 1)
            payload.withUnsafeBytes { bytes in
                header.encode(payload: bytes, seed: WALFormat.crcSeed(salt: salt), into: segment.pointer + offset)
            }
            offset += header.bytes + payload.count
        }
        let file = try await storage.open(WALFormat.segmentName(1), create: true)
        try await file.write(UnsafeRawBufferPointer(segment.bytes), at: 0)
        try await file.synchronize()
    }
}

/// Batches attempted and acknowledged. Used on one reactor thread.
final class BatchLedger: @unchecked Sendable {
    var attempted: Set<Int> = []
    var acknowledged: Set<Int> = []
}
