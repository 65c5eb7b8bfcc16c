import GranaryIO
import GranaryPaxos
import GranaryReplication
import GranaryStorage
import GranaryStorageFaults
import Testing

/// The replication driver on a core's reactor (the simulator runs the same code on its
/// scheduler): a group of one elects itself, concurrent writes go through its log in
/// shared groups and are applied, every acknowledged write survives a power cut, and a
/// disk failure stops the replica instead of losing a write silently.
@Suite struct ReplicationDriverTests {
    static func options() -> ReplicaStore<FaultyStorage>.Options {
        var options = ReplicaStore<FaultyStorage>.Options()
        options.log.segmentBytes = 64 * 1024
        options.log.groupBytesMax = 16 * 1024
        options.log.recordPayloadBytesMax = 8 * 1024
        options.checkpointDirtyPages = 16
        options.checkpointLogSegments = 2
        return options
    }

    static func key(_ index: Int) -> [UInt8] { Array("key-\(index)".utf8) }

    @Test func aGroupOfOneKeepsEveryAcknowledgedWriteAcrossAPowerCut() async throws {
        let (written, found, leads) = try await onReactor { reactor in
            let storage = FaultyStorage(seed: 3)
            let driver = try await ReplicationDriver.openAlone(
                storage: storage, storeOptions: Self.options(), executor: reactor)
            let written = await withTaskGroup(of: Int?.self) { group in
                for index in 0..<300 {
                    group.addTask {
                        do throws(ReplicationDriver<FaultyStorage>.WriteFailure) {
                            try await driver.write([.put(key: Self.key(index), value: [UInt8(index % 256)])])
                            return index
                        } catch {
                            return nil
                        }
                    }
                }
                var written: [Int] = []
                for await index in group { if let index { written.append(index) } }
                return written
            }
            await driver.close()
            storage.powerCut()
            let reopened = try await ReplicationDriver.openAlone(
                storage: storage, storeOptions: Self.options(), executor: reactor)
            var found = 0
            for index in written where try await reopened.store.get(Self.key(index)) == [UInt8(index % 256)] {
                found += 1
            }
            let leads = await reopened.replica.role == .leader
            await reopened.close()
            return (written.count, found, leads)
        }
        #expect(written == 300)
        #expect(found == written)
        #expect(leads)
    }

    @Test func aDiskFailureStopsTheReplica() async throws {
        let (first, second) = try await onReactor { reactor in
            let storage = FaultyStorage(seed: 4)
            let driver = try await ReplicationDriver.openAlone(
                storage: storage, storeOptions: Self.options(), executor: reactor)
            storage.failNext(.write)
            var outcomes: [String] = []
            for index in 0..<2 {
                do throws(ReplicationDriver<FaultyStorage>.WriteFailure) {
                    try await driver.write([.put(key: Self.key(index), value: [1])])
                    outcomes.append("written")
                } catch {
                    if case .storage = error { outcomes.append("storage") } else { outcomes.append("\(error)") }
                }
            }
            await driver.close()
            return (outcomes[0], outcomes[1])
        }
        #expect(first == "storage")
        #expect(second == "storage")
    }
}

/// Runs `body` as a task on a fresh reactor's thread, and stops the reactor afterwards.
func onReactor<T: Sendable>(_ body: @escaping @Sendable (Reactor) async throws -> T) async throws -> T {
    let group = try ReactorGroup(cpus: [nil])
    defer { group.stop() }
    let reactor = group.reactors[0]
    return try await Task(executorPreference: reactor) { try await body(reactor) }.value
}
