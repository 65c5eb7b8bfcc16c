import Foundation
import Glibc
import GranaryIO
import GranaryCommands
import GranaryModel
import GranaryPartition
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
        let (partitionCount, placed) = try Self.partitionLayout(
            in: configuration.dataDirectory, default: configuration.cpus.count)
        do {
            group = try ReactorGroup(cpus: configuration.cpus.map { $0 })
        } catch {
            throw StartupFailure(description: "granary: cannot start the reactors: \(error)")
        }
        do {
            services = try Self.openServices(
                configuration: configuration, reactors: group.reactors,
                partitionCount: partitionCount, placedOver: placed)
            if serving { try serve(logger: logger) }
        } catch {
            group.stop()
            throw error
        }
    }

    /// Recovers the partitions, the transactions and the catalog, and makes each core's
    /// DynamoDB service.
    private static func openServices(
        configuration: NodeConfiguration, reactors: [Reactor], partitionCount: Int,
        placedOver placed: Int
    ) throws -> [DynamoService] {
        var storeOptions = ReplicaStore<ReactorStorage>.Options(
            memoryBudgetBytes: max(16 << 20, configuration.memoryBytes / partitionCount))
        storeOptions.log.segmentBytes = configuration.logSegmentBytes
        let options = storeOptions
        var partitions: [Partition] = []
        for index in 0..<partitionCount {
            let directory = "\(configuration.dataDirectory)/partition-\(index)"
            if mkdir(directory, 0o755) != 0 && errno != EEXIST {
                throw StartupFailure(description: "granary: cannot create \(directory): \(Errno(errno))")
            }
            let reactor = reactors[index % reactors.count]
            let partition = try wait(on: reactor) { () async throws -> Partition in
                try await Partition.open(index: index, directory: directory, reactor: reactor, options: options)
            } failure: {
                "granary: cannot open partition \(index) in \(directory): \($0)"
            }
            partitions.append(partition)
        }
        let cores = reactors.map { CoreTables(reactor: $0) }
        let transport = LocalPartitions(partitions, map: PartitionMap(count: placed))
        let home = reactors[0]
        try wait(on: home) { () async throws in
            try await TransactionLedger.recover(over: transport, now: Date().timeIntervalSince1970)
        } failure: {
            "granary: cannot finish the transactions committed before the node stopped: \($0)"
        }
        let catalog = try wait(on: home) { () async throws -> Catalog in
            try await Catalog.open(over: transport, cores: cores, on: home)
        } failure: {
            "granary: cannot read the table catalog: \($0)"
        }
        return cores.map { tables in
            DynamoService(tables: tables, catalog: catalog, transport: transport, verifier: configuration.credentials)
        }
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
        group.stop()
    }
}
