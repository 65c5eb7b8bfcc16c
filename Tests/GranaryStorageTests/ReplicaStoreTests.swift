import Glibc
import GranaryIO
@testable import GranaryStorage
import GranaryStorageFaults
import Testing

private func key(_ value: Int) -> [UInt8] { Array(String(format: "k%06d", value).utf8) }

@Suite struct ReplicaStoreTests {
    /// Concurrent writers, checkpoints forced often, and a power cut at a random write or
    /// sync; after each reopen every acknowledged write is there with its value.
    @Test(arguments: 0..<20)
    func acknowledgedWritesSurvivePowerCuts(seed: UInt64) async throws {
        let failures = try await onReactor { reactor in
            let storage = FaultyStorage(seed: seed)
            var random = SplitMix64(seed: seed &+ 1000)
            var options = ReplicaStore<FaultyStorage>.Options()
            options.log = smallLog
            options.tree.cachePages = 32
            options.checkpointDirtyPages = 8 + Int(random.next() % 40)
            options.checkpointLogSegments = 3
            let ledger = StoreLedger()
            var failures: [String] = []
            for round in 0..<5 {
                let store = try await ReplicaStore.open(storage: storage, options: options, executor: reactor)
                for (key, value) in ledger.acknowledged {
                    let found = try await store.get(key)
                    // A write that was never acknowledged may or may not have landed, but an
                    // acknowledged one must, unless a later attempt on the key overwrote it.
                    if found != value && !ledger.overwrittenByUnacknowledged.contains(key) {
                        failures.append("round \(round): key \(String(decoding: key, as: UTF8.self)) lost")
                    }
                }
                storage.cutPower(afterOperations: 20 + Int(random.next() % 200))
                let writers = 1 + Int(random.next() % 8)
                let perWriter = 20 + Int(random.next() % 60)
                let base = round * 10_000
                let sizes = (0..<(writers * perWriter)).map { _ in Int(random.next() % 2000) }
                await withTaskGroup(of: Void.self) { group in
                    for writer in 0..<writers {
                        group.addTask {
                            for index in 0..<perWriter {
                                let k = key(base + (writer * perWriter + index) % 700)
                                let v = [UInt8](
                                    repeating: UInt8(truncatingIfNeeded: writer &+ index),
                                    count: sizes[writer * perWriter + index])
                                ledger.attempt(k)
                                do throws(StorageError) {
                                    try await store.put(k, v)
                                    ledger.acknowledge(k, v)
                                } catch {
                                    return
                                }
                            }
                        }
                    }
                }
                storage.powerCut()
                ledger.settle()
            }
            return failures
        }
        #expect(failures.isEmpty, "\(failures.prefix(5))")
    }

    @Test func checkpointsRecycleTheLogAndReopenReplaysOnlyTheTail() async throws {
        let (checkpoints, values) = try await onReactor { reactor in
            let storage = FaultyStorage(seed: 50)
            var options = ReplicaStore<FaultyStorage>.Options()
            options.log = smallLog
            options.checkpointDirtyPages = 16
            let store = try await ReplicaStore.open(storage: storage, options: options, executor: reactor)
            for k in 0..<3000 { try await store.put(key(k % 500), [UInt8](repeating: UInt8(k % 251), count: 300)) }
            try await store.delete(key(7))
            let checkpoints = await store.checkpointCount
            storage.powerCut()
            let reopened = try await ReplicaStore.open(storage: storage, options: options, executor: reactor)
            let seven = try await reopened.get(key(7))
            let last = try await reopened.get(key(499))
            let count = try await reopened.scan(from: Array("k".utf8), limit: 1000).count  // past the slot record
            return (checkpoints, (seven, last, count))
        }
        #expect(checkpoints > 3)
        #expect(values.0 == nil)
        #expect(values.1 == [UInt8](repeating: UInt8(2999 % 251), count: 300))
        #expect(values.2 == 499)
    }
}

/// What writers attempted and were told, per key. Used on one reactor thread.
final class StoreLedger: @unchecked Sendable {
    var acknowledged: [[UInt8]: [UInt8]] = [:]
    var overwrittenByUnacknowledged: Set<[UInt8]> = []
    private var inFlight: [[UInt8]: Int] = [:]

    func attempt(_ key: [UInt8]) {
        inFlight[key, default: 0] += 1
    }

    func acknowledge(_ key: [UInt8], _ value: [UInt8]) {
        inFlight[key]! -= 1
        acknowledged[key] = value
        overwrittenByUnacknowledged.remove(key)
    }

    /// After a cut, a key with an attempt that was never acknowledged may hold that value.
    func settle() {
        for (key, count) in inFlight where count > 0 { overwrittenByUnacknowledged.insert(key) }
        inFlight.removeAll()
    }
}
