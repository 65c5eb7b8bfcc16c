import Foundation
import Glibc
import GranaryIO
import GranaryCommands
import GranaryModel
import GranaryPartition
import GranaryPaxos
import GranaryRouter
import GranaryStorage
import Logging

/// A running node: the reactors, the partitions they own, the catalog, and an HTTP server
/// per core speaking the DynamoDB protocol, over one data directory.
///
/// The data directory holds `partitions` (how many partitions this node's data is split
/// into, fixed when the directory is first used) and one `partition-N` directory each. A
/// partition lives on core N mod cores, so a node restarted with another core count still
/// finds every item where its hash put it.
public final class Node: Sendable {
    public let configuration: NodeConfiguration
    private let group: ReactorGroup
    private let dataDirectory: DataDirectory
    /// The DynamoDB service of each core, by reactor index: what its HTTP server calls.
    /// The request fuzzer calls them directly, without sockets.
    public let services: [DynamoService]
    /// The reactors, by index: a service is called on its own reactor's thread.
    public var reactors: [Reactor] { group.reactors }
    /// In a cluster, this node's part in it.
    private let cluster: Cluster?

    /// Why the node could not start, as a message for the operator.
    public struct StartupFailure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Checks the machine, opens the data directory, starts one reactor per CPU, recovers
    /// the partitions and the catalog, then listens on the configured address on every core
    /// (SO_REUSEPORT spreads connections over them). With `serving` false it does not
    /// listen: `services` answers requests handed to it in process.
    public init(configuration: NodeConfiguration, logger: Logger, serving: Bool = true) throws {
        do {
            try IOUringSupport.check()
        } catch {
            throw StartupFailure(description: error.description)
        }
        do {
            dataDirectory = try DataDirectory.open(configuration.dataDirectory)
        } catch {
            throw StartupFailure(description: error.description)
        }
        self.configuration = configuration
        if let cluster = configuration.cluster {
            try Self.checkIdentity(of: configuration.dataDirectory, in: cluster)
        }
        let (partitionCount, placed) = try Self.partitionLayout(
            in: configuration.dataDirectory, default: configuration.cluster?.partitions ?? configuration.cpus.count)
        do {
            group = try ReactorGroup(
                cpus: configuration.cpus.map { $0 }, pollsWhenIdle: configuration.pollsWhenIdle)
        } catch {
            throw StartupFailure(description: "granary: cannot start the reactors: \(error)")
        }
        var cluster: Cluster?
        if let clustered = configuration.cluster {
            cluster = Cluster(
                home: group.reactors[0], configuration: clustered,
                clusterID: try Self.storedClusterID(in: configuration.dataDirectory)!,
                partitionCount: partitionCount, dataDirectory: configuration.dataDirectory, logger: logger)
        }
        self.cluster = cluster
        do {
            services = try Self.openServices(
                configuration: configuration, reactors: group.reactors,
                partitionCount: partitionCount, placedOver: placed, cluster: cluster, logger: logger)
            if serving { try serve(logger: logger) }
        } catch {
            cluster?.stop()
            group.stop()
            throw error
        }
    }

    /// Recovers the partitions, the transactions and the catalog, and makes each core's
    /// DynamoDB service.
    private static func openServices(
        configuration: NodeConfiguration, reactors: [Reactor], partitionCount: Int,
        placedOver placed: Int, cluster: Cluster?, logger: Logger
    ) throws -> [DynamoService] {
        let opened = try openPartitions(
            configuration: configuration, reactors: reactors, count: partitionCount, cluster: cluster)
        let cores = reactors.map { CoreTables(reactor: $0) }
        let local = LocalPartitions(opened, map: PartitionMap(count: placed))
        let home = reactors[0]
        var transport: any PartitionTransport = local
        if let cluster {
            let listener: Int32
            do {
                listener = try cluster.configuration.peerListen.listen()
            } catch {
                throw StartupFailure(
                    description: "granary: cannot listen for peers on \(cluster.configuration.peerListen): \(error)")
            }
            try wait(on: home) {
                await cluster.start(partitions: opened, local: local, listener: listener)
            } failure: {
                "granary: cannot start the peer network: \($0)"
            }
            transport = ClusterPartitions(local: local, partitions: opened, cluster: cluster)
        }
        let partitionTransport = transport
        shipGlobalIndexes(of: opened, placed: placed, over: partitionTransport, on: home, logger: logger)
        try sweepTransactions(
            of: opened, placed: placed, over: partitionTransport, alone: cluster == nil,
            faults: cluster?.configuration.transactionFaults ?? TransactionLedger.Faults(), on: home, logger: logger)
        // In a cluster this needs partition 0's leader: a quorum of the nodes must be up.
        let catalog = try wait(on: home) { () async throws -> Catalog in
            try await untilAnswered(clustered: cluster != nil, logger: logger) { () async throws(DynamoError) in
                try await Catalog.open(over: partitionTransport, cores: cores, on: home)
            }
        } failure: {
            "granary: cannot read the table catalog: \($0)"
        }
        // Global indexes whose build a stop interrupted start it again.
        let clustered = cluster != nil
        Task(executorPreference: home) {
            await IndexBuilder.resumeAll(catalog: catalog, over: partitionTransport, on: home, clustered: clustered)
        }
        var status: (@Sendable () async -> JSON)?
        var forwarder: (any RequestForwarder)?
        if let cluster {
            forwarder = ClusterForwarder(cluster: cluster, partitions: opened)
            // Other nodes change the catalog too: every node reads it again regularly.
            Task(executorPreference: home) {
                while (try? await home.sleep(for: .milliseconds(500))) != nil { try? await catalog.refresh() }
            }
            status = { await cluster.status(partitions: opened, api: configuration.listen) }
        }
        let services = cores.map { tables in
            DynamoService(
                tables: tables, catalog: catalog, transport: transport, verifier: configuration.credentials,
                clusterStatus: status, forwarder: forwarder,
                transactionFaults: cluster?.configuration.transactionFaults ?? TransactionLedger.Faults())
        }
        if let cluster {
            try wait(on: home) {
                await cluster.serve(with: services, on: reactors)
            } failure: {
                "granary: cannot start the peer network: \($0)"
            }
        }
        return services
    }

    /// Finishes or aborts the transactions that their coordinators left: alone, every one
    /// before the node serves (each coordinator stopped with the node); then, each second,
    /// those of the partitions whose replica here leads (`TransactionLedger.sweep`).
    private static func sweepTransactions(
        of partitions: [Partition], placed: Int, over transport: any PartitionTransport, alone: Bool,
        faults: TransactionLedger.Faults, on home: Reactor, logger: Logger
    ) throws {
        if alone {
            try wait(on: home) { () async throws in
                for partition in 0..<placed {
                    try await TransactionLedger.sweep(
                        partition, over: transport, now: Date().timeIntervalSince1970, delays: .none)
                }
            } failure: {
                "granary: cannot finish the transactions left when the node stopped: \($0)"
            }
        }
        Task(executorPreference: home) {
            while (try? await home.sleep(for: .seconds(1))) != nil {
                for partition in 0..<placed where await partitions[partition].leads {
                    do throws(DynamoError) {
                        try await TransactionLedger.sweep(
                            partition, over: transport, now: Date().timeIntervalSince1970, faults: faults)
                    } catch {
                        logger.debug("transactions of partition \(partition) not swept: \(error)")
                    }
                }
            }
        }
    }

    /// Ships the global index changes that the partitions whose replica here leads have
    /// recorded (`GlobalIndexShipper`), every 20 ms: how far behind the table an index
    /// may be when nothing fails.
    private static func shipGlobalIndexes(
        of partitions: [Partition], placed: Int, over transport: any PartitionTransport, on home: Reactor,
        logger: Logger
    ) {
        Task(executorPreference: home) {
            while (try? await home.sleep(for: .milliseconds(20))) != nil {
                for partition in 0..<placed where await partitions[partition].leads {
                    do throws(DynamoError) {
                        // Full pages mean more records: a few more passes, then the next partition.
                        for _ in 0..<16 {
                            let shipped = try await GlobalIndexShipper.ship(partition, over: transport)
                            if shipped < GlobalIndexShipper.recordsPerPass { break }
                        }
                    } catch {
                        logger.debug("global index changes of partition \(partition) not shipped: \(error)")
                    }
                }
            }
        }
    }

    /// Opens (recovering) each partition on its core: alone, or as a member of its group.
    private static func openPartitions(
        configuration: NodeConfiguration, reactors: [Reactor], count: Int, cluster: Cluster?
    ) throws -> [Partition] {
        var storeOptions = ReplicaStore<ReactorStorage>.Options(
            memoryBudgetBytes: max(16 << 20, configuration.memoryBytes / count))
        storeOptions.log.segmentBytes = configuration.logSegmentBytes
        let options = storeOptions
        var partitions: [Partition] = []
        for index in 0..<count {
            let directory = "\(configuration.dataDirectory)/partition-\(index)"
            if mkdir(directory, 0o755) != 0 && errno != EEXIST {
                throw StartupFailure(description: "granary: cannot create \(directory): \(Errno(errno))")
            }
            let reactor = reactors[index % reactors.count]
            let replication: Partition.Replication? = try cluster.map {
                Self.replication(of: index, in: $0, recovering: try RecoveryMark.isRecovering(directory))
            }
            let partition = try wait(on: reactor) { () async throws -> Partition in
                try await Partition.open(
                    index: index, directory: directory, reactor: reactor, options: options, replication: replication)
            } failure: {
                "granary: cannot open partition \(index) in \(directory): \($0)"
            }
            partitions.append(partition)
        }
        return partitions
    }

    /// Runs `body` until it succeeds; alone, once. In a cluster, an error that says no
    /// leader is within reach means the other nodes are not up yet: wait for them.
    private static func untilAnswered<T>(
        clustered: Bool, logger: Logger, _ body: () async throws(DynamoError) -> T
    ) async throws(DynamoError) -> T {
        var waited = 0
        while true {
            do throws(DynamoError) {
                return try await body()
            } catch {
                guard clustered, error.type == "InternalServerError", waited < 3600 else { throw error }
                if waited % 10 == 0 { logger.info("waiting for a quorum of the cluster: \(error.message)") }
                waited += 1
                try? await Reactor.current!.sleep(for: .seconds(1))
            }
        }
    }

    /// How partition `index` takes part in its group: every member holds a replica, and
    /// the election draws are seeded per node and partition; `recovering` after a lost disk.
    private static func replication(of index: Int, in cluster: Cluster, recovering: Bool) -> Partition.Replication {
        let settings = cluster.configuration
        var configuration = Replica.Configuration(
            id: settings.node, members: settings.voters, logOnly: settings.logOnly,
            seed: UInt64(settings.node) << 32 | UInt64(index))
        configuration.recovering = recovering
        configuration.maxEntriesPerMessage = 256
        var replication = Partition.Replication(
            configuration: configuration, environment: cluster.links[index], tick: settings.tick)
        replication.clockRate = settings.clockRate
        let full = settings.fullReplicas
        let preferred = full[index % full.count]
        replication.preferredLeader = { cluster.isReachable(preferred) ? preferred : nil }
        return replication
    }

    /// A cluster member's data directory holds the cluster's id and the node's: given
    /// the first time, they must match at every later start (a directory of another
    /// cluster, or of another node, would vote with someone else's promises).
    private static func checkIdentity(of directory: String, in cluster: ClusterConfiguration) throws {
        let nodePath = "\(directory)/node-id"
        let storedID = try storedClusterID(in: directory)
        if let storedID {
            if let given = cluster.clusterID, given != storedID {
                throw StartupFailure(
                    description:
                        "granary: --cluster-id \(given) does not match \(storedID),"
                        + " the cluster this data directory belongs to"
                )
            }
            let storedNode = (try? String(contentsOfFile: nodePath, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            guard storedNode == String(cluster.node) else {
                throw StartupFailure(
                    description:
                        "granary: this data directory belongs to node \(storedNode ?? "?"), not node \(cluster.node)")
            }
            return
        }
        guard let given = cluster.clusterID else {
            throw StartupFailure(description: "granary: a new cluster member needs --cluster-id")
        }
        guard !given.isEmpty, given.utf8.count <= 64,
            given.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) })
        else {
            throw StartupFailure(description: "granary: --cluster-id must be 1 to 64 letters, digits, '-', '_' or '.'")
        }
        do {
            try "\(cluster.node)\n".write(toFile: nodePath, atomically: true, encoding: .utf8)
            try "\(given)\n".write(toFile: "\(directory)/cluster-id", atomically: true, encoding: .utf8)
        } catch {
            throw StartupFailure(description: "granary: cannot write the cluster identity in \(directory): \(error)")
        }
    }

    private static func storedClusterID(in directory: String) throws -> String? {
        (try? String(contentsOfFile: "\(directory)/cluster-id", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Listens on the configured address on every core, each core's server answering with
    /// its service.
    private func serve(logger: Logger) throws {
        let reactors = group.reactors
        let servers = zip(reactors, services).map { reactor, service in
            HTTPServer(reactor: reactor, logger: logger, router: { service.owningCore(of: &$0) }) { request in
                await service.handle(request)
            }
        }
        for server in servers { server.join(servers) }
        for (reactor, server) in zip(reactors, servers) {
            let listener: Int32
            do {
                listener = try configuration.listen.listen()
            } catch {
                throw StartupFailure(description: "granary: cannot listen on \(configuration.listen): \(error)")
            }
            try Self.wait(on: reactor) { () async throws in
                server.start(listener: listener)
            } failure: {
                "granary: cannot start serving: \($0)"
            }
        }
    }

    /// Runs `body` on `reactor` and waits for it from this (non-reactor) thread.
    private static func wait<T: Sendable>(
        on reactor: Reactor, _ body: @escaping @Sendable () async throws -> T,
        failure: (any Error) -> String
    ) throws -> T {
        let outcome = Locked<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task(executorPreference: reactor) {
            do {
                let value = try await body()
                outcome.withLock { $0 = .success(value) }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
            done.signal()
        }
        done.wait()
        switch outcome.withLock({ $0 })! {
        case .success(let value): return value
        case .failure(let error): throw StartupFailure(description: failure(error))
        }
    }

    /// How many partitions the data directory is split into (its `partitions` file, or
    /// `count` for a new directory), and over how many of them items are placed by hash.
    /// Builds before the `placement` file placed every item in partition 0 (an operator
    /// precedence slip made the hash-range arithmetic always 0); their directories keep
    /// that placement, so that every item stays where it was written.
    private static func partitionLayout(in directory: String, default count: Int) throws -> (count: Int, placed: Int) {
        let path = "\(directory)/partitions"
        let placementPath = "\(directory)/placement"
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            guard let stored = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), (1...1024).contains(stored)
            else {
                throw StartupFailure(description: "granary: \(path) does not hold a partition count")
            }
            guard let placement = try? String(contentsOfFile: placementPath, encoding: .utf8) else {
                return (stored, 1)
            }
            guard placement.trimmingCharacters(in: .whitespacesAndNewlines) == Self.placementByHashRange else {
                throw StartupFailure(
                    description: "granary: \(placementPath) names a placement this build does not know")
            }
            return (stored, stored)
        }
        do {
            // The placement first: a directory with a partition count and no placement is
            // read as an old one.
            try "\(Self.placementByHashRange)\n".write(toFile: placementPath, atomically: true, encoding: .utf8)
            try "\(count)\n".write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw StartupFailure(description: "granary: cannot write \(path): \(error)")
        }
        return (count, count)
    }

    /// The `placement` file's text: items spread over every partition by hash range.
    static let placementByHashRange = "hash-range"

    /// Stops every reactor; returns when their threads have finished.
    public func stop() {
        cluster?.stop()
        group.stop()
    }
}
