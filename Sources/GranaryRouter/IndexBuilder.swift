import GranaryCommands
import GranaryIO
import GranaryModel

/// Builds a global index added to a table that already has items (UpdateTable's Create):
/// every item of every partition is queued in its partition's outbox for the new index
/// (`PartitionRequest.backfill`, a page at a time, paced by the outbox's size), the
/// shipper carries them over as it carries every write's, and once the outboxes are empty
/// the index is ACTIVE. Writes made meanwhile keep the index too (it is in the catalog
/// from the start), and a record shipped twice is harmless, so a build that stops (a
/// restart) starts again from the beginning: `resumeAll` at start-up.
public enum IndexBuilder {
    static let itemsPerPage = 64

    /// Builds index `index` of table `table` unless it is gone or built meanwhile; retries
    /// whatever fails until it is.
    public static func build(
        table: String, index: String, catalog: Catalog, over transport: some PartitionTransport, on reactor: Reactor,
        clustered: Bool
    ) async {
        // In a cluster, every node's catalog learns of the index within a refresh; a write
        // routed by a node that has not is refused once the partitions are told of the
        // index (`announce`), so the build waits for the refreshes first.
        if clustered, (try? await reactor.sleep(for: .seconds(2))) == nil { return }
        while true {
            guard let info = await catalog.table(table), let target = info.index(named: index), target.creating else {
                return
            }
            let indexes = IndexMaintenance(
                partitionKey: info.partitionKey.name, sortKey: info.sortKey?.name, indexes: info.globalIndexes)
            var violations = 0
            do throws(DynamoError) {
                // From here on every partition refuses writes that would leave the new
                // index out (routed by a node whose catalog is behind): the backfill of
                // each item comes after every write to it that does.
                try await announce(info, over: transport)
                for partition in 0..<transport.map.count {
                    var after: [UInt8]? = nil
                    repeat {
                        // Paced by the shipping: at most a page of records waiting here.
                        while try await GlobalIndexShipper.pending(partition, over: transport, limit: 1024) >= 1024 {
                            if (try? await reactor.sleep(for: .milliseconds(50))) == nil { return }
                        }
                        let page = try await transport.backfill(
                            table: info.id, indexes: indexes, after: after, limit: itemsPerPage, at: partition)
                        after = page.last
                        violations += page.keyViolations
                    } while after != nil
                }
                while try await totalPending(over: transport) > 0 {
                    if (try? await reactor.sleep(for: .milliseconds(20))) == nil { return }
                }
                let found = violations
                _ = try await catalog.update(table) { (table: inout TableInfo) throws(DynamoError) in
                    for position in table.globalIndexes.indices where table.globalIndexes[position].id == target.id {
                        table.globalIndexes[position].creating = false
                        table.globalIndexes[position].keyViolations = found
                    }
                }
                return
            } catch {
                if (try? await reactor.sleep(for: .seconds(1))) == nil { return }
            }
        }
    }

    /// Drops a deleted global index's entries (`table` is its table after the deletion),
    /// once no write can queue a change for it any more and every change queued before has
    /// been shipped (a record queued for it would put entries back).
    public static func purge(
        index id: UInt32, of table: TableInfo, over transport: some PartitionTransport, on reactor: Reactor
    ) async {
        while (try? await announce(table, over: transport)) == nil {
            if (try? await reactor.sleep(for: .seconds(1))) == nil { return }
        }
        for _ in 0..<600 {
            if (try? await totalPending(over: transport)) == 0 { break }
            if (try? await reactor.sleep(for: .milliseconds(100))) == nil { return }
        }
        for partition in 0..<transport.map.count { try? await transport.purge(table: id, at: partition) }
    }

    /// Starts the build of every global index the catalog shows being created (after a
    /// restart).
    public static func resumeAll(
        catalog: Catalog, over transport: some PartitionTransport, on reactor: Reactor, clustered: Bool
    ) async {
        for name in await catalog.names() {
            guard let info = await catalog.table(name) else { continue }
            for index in info.globalIndexes where index.creating {
                Task(executorPreference: reactor) {
                    await build(
                        table: name, index: index.name, catalog: catalog, over: transport, on: reactor,
                        clustered: clustered)
                }
            }
        }
    }

    /// Tells every partition the table's index version: writes routed with an older one
    /// are refused from then on.
    static func announce(_ table: TableInfo, over transport: some PartitionTransport) async throws(DynamoError) {
        for partition in 0..<transport.map.count {
            try await transport.announceIndexVersion(table.indexVersion, table: table.id, at: partition)
        }
    }

    static func totalPending(over transport: some PartitionTransport) async throws(DynamoError) -> Int {
        var total = 0
        for partition in 0..<transport.map.count {
            total += try await GlobalIndexShipper.pending(partition, over: transport, limit: 1024)
        }
        return total
    }
}
