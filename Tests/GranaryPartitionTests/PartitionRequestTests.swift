import Foundation
import GranaryCommands
import GranaryIO
import GranaryModel
import GranaryPartition
import GranaryStorage
import Testing

/// A partition reached only through its requests, as the router reaches it: transaction
/// locks by owner, requests that would be wrong from a peer refused rather than trapped,
/// and the permits that bound the requests in flight.
@Suite struct PartitionRequestTests {
    static let table: UInt32 = 1

    static func key(_ name: String) -> [UInt8] { KeyEncoding.tablePrefix(table) + Array(name.utf8) }

    static func put(_ name: String, _ value: String) -> WriteCommand {
        WriteCommand(table: table, key: key(name), action: .put(["pk": .s(name), "v": .s(value)]))
    }

    /// Runs `body` on one reactor with a single fresh partition behind a `LocalPartitions`.
    func withPartition<T: Sendable>(
        requestsInFlightMax: Int = LocalPartitions.requestsInFlightDefault,
        _ body: @escaping @Sendable (LocalPartitions, Reactor) async throws -> T
    ) async throws -> T {
        let path = FileManager.default.currentDirectoryPath + "/.build/test-data/\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try await opening(path, requestsInFlightMax: requestsInFlightMax, body)
    }

    /// Opens the partition in `path` on a fresh reactor, runs `body`, and closes it.
    func opening<T: Sendable>(
        _ path: String, requestsInFlightMax: Int = LocalPartitions.requestsInFlightDefault,
        _ body: @escaping @Sendable (LocalPartitions, Reactor) async throws -> T
    ) async throws -> T {
        let group = try ReactorGroup(cpus: [nil])
        defer { group.stop() }
        let reactor = group.reactors[0]
        return try await Task(executorPreference: reactor) {
            let partition = try await Partition.open(
                index: 0, directory: path, reactor: reactor,
                options: ReplicaStore<ReactorStorage>.Options(memoryBudgetBytes: 16 << 20))
            let transport = LocalPartitions(
                [partition], map: PartitionMap(count: 1), requestsInFlightMax: requestsInFlightMax)
            let result = try await body(transport, reactor)
            await partition.close()
            return result
        }.value
    }

    @Test func transactionLocksBelongToOneOwnerAndConflictByIndex() async throws {
        let (conflict, again, afterRelease, secondLock) = try await withPartition { transport, _ in
            let first = TransactionID("first"), second = TransactionID("second")
            #expect(try await transport.lock(first, keys: [Self.key("b"), Self.key("a")], at: 0) == nil)
            // The second transaction names "c" (free) and "a" (held): the conflict is "a",
            // by its index in the request, and "c" is not left locked.
            let conflict = try await transport.lock(second, keys: [Self.key("c"), Self.key("a")], at: 0)
            var secondLock: DynamoError?
            do throws(DynamoError) { _ = try await transport.lock(first, keys: [Self.key("d")], at: 0) } catch {
                secondLock = error
            }
            try await transport.release(first, at: 0)
            try await transport.release(first, at: 0)  // a repeated release changes nothing
            let again = try await transport.lock(second, keys: [Self.key("c"), Self.key("a")], at: 0)
            try await transport.release(second, at: 0)
            let outcome = try await transport.prepare(
                first, [Self.put("a", "1"), Self.put("c", "2")], coordinator: 0, at: 0)
            try await transport.release(first, at: 0)
            guard case .prepared(let writes) = outcome else { return (conflict, again, false, secondLock) }
            return (conflict, again, writes.count == 2, secondLock)
        }
        #expect(conflict == 1)
        #expect(again == nil)
        #expect(afterRelease)
        #expect(secondLock?.type == "InternalServerError")
    }

    @Test func preparedLocksOutliveTheProcessAndAnApplyRunsOnce() async throws {
        let path = FileManager.default.currentDirectoryPath + "/.build/test-data/\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let transaction = TransactionID("prepared")
        let image = TransactionWrite(table: Self.table, key: Self.key("a"), item: ["pk": .s("a"), "v": .s("txn")])
        try await opening(path) { transport, _ in
            guard
                case .prepared = try await transport.prepare(transaction, [Self.put("a", "txn")], coordinator: 0, at: 0)
            else { throw DynamoError("Test", "not prepared") }
        }
        let (conflict, applied, afterWrite, again) = try await opening(path) { transport, _ in
            // The lock is back after the restart: another transaction conflicts on "a".
            let conflict = try await transport.lock(TransactionID("other"), keys: [Self.key("a")], at: 0)
            try await transport.apply(transaction, [image], at: 0)
            let applied = try await transport.get(Self.key("a"), at: 0)
            _ = try await transport.execute(Self.put("a", "later"), at: 0)
            // A repeated apply finds no locks and overwrites nothing; a release finds none.
            try await transport.apply(transaction, [image], at: 0)
            let again = try await transport.release(transaction, at: 0)
            return (conflict, applied, try await transport.get(Self.key("a"), at: 0), again)
        }
        #expect(conflict == 0)
        #expect(try applied.map(StoredItem.decode)?["v"] == .s("txn"))
        #expect(try afterWrite.map(StoredItem.decode)?["v"] == .s("later"))
        #expect(again == false)
        let (locksLeft, created, found) = try await opening(path) { transport, _ in
            let record = SystemEntry(key: KeyEncoding.tablePrefix(0) + Array("x".utf8), value: [1])
            let created = try await transport.systemCreate([record], at: 0)
            let found = try await transport.systemCreate([SystemEntry(key: record.key, value: [2])], at: 0)
            return (try await transport.systemScan(prefix: TransactionLock.prefix, at: 0).count, created, found)
        }
        #expect(locksLeft == 0)
        #expect(created.isEmpty)
        #expect(found.map(\.value) == [[1]])
    }

    /// A table with a local index keeps each item collection's size with its writes, and
    /// refuses a write that would take a collection past 10 GB (here, one whose recorded
    /// size is just under it); a write that shrinks it still goes.
    @Test func anItemCollectionIsBoundedAndItsSizeKept() async throws {
        let index = SecondaryIndex(
            name: "by-n", id: 2, partitionKey: KeyAttribute(name: "pk", type: "S"),
            sortKey: KeyAttribute(name: "n", type: "N"), projection: IndexProjection(kind: .all))
        let indexes = IndexMaintenance(partitionKey: "pk", sortKey: "sk", indexes: [index])
        @Sendable func put(_ sk: String, _ text: String) -> WriteCommand {
            let item: Item = ["pk": .s("p"), "sk": .s(sk), "n": .n(try! Number(parsing: "1")), "t": .s(text)]
            return WriteCommand(
                table: Self.table, key: KeyEncoding.itemKey(table: Self.table, partitionKey: .s("p"), sortKey: .s(sk)),
                action: .put(item), indexes: indexes)
        }
        let (first, refused, shrunk) = try await withPartition { transport, _ in
            let first = try await transport.execute(put("a", "x"), at: 0).collectionBytes
            let collection = IndexMaintenance.collectionKey(table: Self.table, partitionKey: .s("p"))
            let nearlyFull = Int64(IndexMaintenance.collectionBytesMax - 10)
            try await transport.systemPut(collection, withUnsafeBytes(of: nearlyFull.bigEndian) { Array($0) }, at: 0)
            var refused: String?
            do throws(DynamoError) { _ = try await transport.execute(put("b", "yyyy"), at: 0) } catch {
                refused = error.type
            }
            let shrunk = try await transport.execute(
                WriteCommand(
                    table: Self.table,
                    key: KeyEncoding.itemKey(table: Self.table, partitionKey: .s("p"), sortKey: .s("a")),
                    action: .delete, indexes: indexes), at: 0
            ).collectionBytes
            return (first, refused, shrunk)
        }
        // DynamoDB's sizes: pk 3, sk 3, n 3 (name and number), t 2; the same again in the index.
        #expect(first == 2 * (3 + 3 + 3 + 2))
        #expect(refused == "ItemCollectionSizeLimitExceededException")
        #expect(shrunk == IndexMaintenance.collectionBytesMax - 10 - first!)
    }

    /// Once a partition is told a table's global index set changed (version 2), a write
    /// routed with an older set (a node whose catalog is behind) is refused before anything
    /// is written, singly or in a transaction; the version only rises, and outlives a
    /// restart. A table never told of keeps taking writes that carry none.
    @Test func writesRoutedWithOlderIndexesAreRefused() async throws {
        let path = FileManager.default.currentDirectoryPath + "/.build/test-data/\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        @Sendable func put(_ name: String, version: Int?) -> WriteCommand {
            WriteCommand(
                table: Self.table, key: Self.key(name), action: .put(["pk": .s(name)]),
                indexes: version.map { IndexMaintenance(partitionKey: "pk", sortKey: nil, indexes: [], version: $0) })
        }
        @Sendable func refusal(_ body: () async throws(DynamoError) -> Void) async -> String? {
            do throws(DynamoError) { try await body() } catch { return error.type }
            return nil
        }
        let first = try await opening(path) { transport, _ in
            _ = try await transport.execute(put("before", version: nil), at: 0)
            try await transport.announceIndexVersion(2, table: Self.table, at: 0)
            try await transport.announceIndexVersion(1, table: Self.table, at: 0)  // an older announcement: no effect
            let stale = await refusal { () throws(DynamoError) in
                _ = try await transport.execute(put("stale", version: 1), at: 0)
            }
            let missing = await refusal { () throws(DynamoError) in
                _ = try await transport.execute(put("missing", version: nil), at: 0)
            }
            let current = await refusal { () throws(DynamoError) in
                _ = try await transport.execute(put("current", version: 2), at: 0)
            }
            let prepared = try await transport.prepare(
                TransactionID("t"), [put("in-transaction", version: 1)], coordinator: 0, at: 0)
            let stored = try await transport.get(Self.key("stale"), at: 0)
            return (stale, missing, current, "\(prepared)", stored)
        }
        #expect(first.0 == "ThrottlingException" && first.1 == "ThrottlingException" && first.2 == nil)
        #expect(first.3.contains("ThrottlingException"), "\(first.3)")
        #expect(first.4 == nil)
        let afterRestart = try await opening(path) { transport, _ in
            await refusal { () throws(DynamoError) in _ = try await transport.execute(put("stale", version: 1), at: 0) }
        }
        #expect(afterRestart == "ThrottlingException")
        let otherTable = try await withPartition { transport, _ in
            try await transport.announceIndexVersion(3, table: 9, at: 0)
            return try await transport.execute(put("free", version: nil), at: 0).new?["pk"]
        }
        #expect(otherTable == .s("free"))
    }

    /// A purge deletes every key of its table, keys of 3 KB among them (in log entries of
    /// many deletes each), and nothing of another table.
    @Test func aPurgeDeletesItsTableAndNothingElse() async throws {
        let (left, kept, counted) = try await withPartition { transport, _ in
            for n in 0..<700 {
                let name = n % 50 == 0 ? String(repeating: "k", count: 3000) + "\(n)" : "item\(n)"
                _ = try await transport.execute(Self.put(name, "v"), at: 0)
            }
            let other: UInt32 = 2
            _ = try await transport.execute(
                WriteCommand(
                    table: other, key: KeyEncoding.tablePrefix(other) + Array("x".utf8), action: .put(["pk": .s("x")])),
                at: 0)
            try await transport.purge(table: Self.table, at: 0)
            func all(_ table: UInt32) async throws(DynamoError) -> Int {
                let prefix = KeyEncoding.tablePrefix(table)
                return try await transport.readRange(
                    RangeRead(
                        KeyRange(lower: prefix, upper: KeyEncoding.prefixEnd(prefix)), after: nil, limit: 10_000,
                        byteLimit: 64 << 20), at: 0
                ).storedItems.count
            }
            return (
                try await all(Self.table), try await all(other),
                try await transport.statistics(table: Self.table, at: 0)
            )
        }
        #expect(left == 0 && kept == 1 && counted.items == 0)
    }

    @Test func requestsThatWouldBeWrongFromAPeerAreRefused() async throws {
        let refusals = try await withPartition { transport, _ in
            let system = KeyEncoding.tablePrefix(0) + Array("x".utf8)
            let requests: [PartitionRequest] = [
                .write(WriteCommand(table: 0, key: system, action: .delete)),  // a user write to the system table
                .write(WriteCommand(table: 2, key: Self.key("a"), action: .delete)),  // a key of another table
                .get(key: [1, 2]),  // shorter than a table prefix
                .get(key: system),
                .systemPut(key: Self.key("a"), value: []),  // a system write to a user table
                .systemScan(prefix: system, after: nil, limit: 0),
                .systemScan(prefix: system, after: nil, limit: 1 << 20),
                .readRange(
                    RangeRead(KeyRange(lower: Self.key(""), upper: Self.key("z")), after: nil, limit: 0, byteLimit: 1)),
                .lock(TransactionID("t"), keys: [Self.key("a"), Self.key("a")]),
                .purge(table: 0),  // the catalog and the ledger
            ]
            var refusals: [String] = []
            for request in requests {
                do throws(DynamoError) {
                    _ = try await transport.send(request, to: 0)
                    refusals.append("accepted")
                } catch {
                    refusals.append(error.type)
                }
            }
            // And a partition this node does not hold.
            do throws(DynamoError) { _ = try await transport.send(.get(key: Self.key("a")), to: 1) } catch {
                refusals.append(error.type)
            }
            return refusals
        }
        #expect(refusals == Array(repeating: "InternalServerError", count: 11))
    }

    @Test func aSaturatedPartitionRefusesNewWorkButFinishesAdmittedWork() async throws {
        let (throttled, written) = try await withPartition(requestsInFlightMax: 1) { transport, reactor in
            let holder = TransactionID("holder")
            #expect(try await transport.lock(holder, keys: [Self.key("a")], at: 0) == nil)
            // This write waits for the transaction's lock, holding the only permit.
            let waiting = Task(executorPreference: reactor) {
                try await transport.execute(Self.put("a", "after"), at: 0)
            }
            var throttled: DynamoError?
            for _ in 0..<10_000 where throttled == nil {  // until the write holds the permit
                do throws(DynamoError) { _ = try await transport.get(Self.key("b"), at: 0) } catch { throttled = error }
                try await Task.sleep(for: .milliseconds(1))
            }
            try await transport.release(holder, at: 0)  // needs no permit
            let outcome = try await waiting.value
            return (throttled, outcome.new?["v"])
        }
        #expect(throttled?.type == "ThrottlingException")
        #expect(throttled?.message == "Rate of requests exceeds the allowed throughput.")
        #expect(written == .s("after"))
    }
}
