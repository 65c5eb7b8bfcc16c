import ArgumentParser
import Glibc
import GranaryIO
import GranaryNode
import GranaryRouter
import Logging

@main
struct Granary: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "granary",
        abstract: "A DynamoDB-compatible storage node.",
        subcommands: [Serve.self, StorageCommand.self],
        defaultSubcommand: Serve.self)
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a node: one durable node with embedded defaults unless told otherwise.")

    @Option(help: "The address to answer on, HOST:PORT or [IPv6]:PORT.")
    var listen: String = "127.0.0.1:8000"

    @Option(
        name: .customLong("data-dir"),
        help: "The directory that holds this node's data (created if missing; not tmpfs).")
    var dataDirectory: String = "./granary-data"

    @Option(
        help:
            "The CPUs to run on, one reactor thread pinned to each, as a list such as 0,2-3. Default: every CPU this process may use."
    )
    var cores: String?

    @Option(help: "Memory for page caches and log buffers, such as 512M or 2G, shared by the partitions.")
    var memory: String = "512M"

    @Option(
        help:
            "A credentials file (one ACCESS_KEY_ID SECRET_ACCESS_KEY pair per line): requests must then be SigV4-signed by one of them."
    )
    var credentials: String?

    @Flag(
        name: .customLong("no-idle-poll"),
        help: ArgumentHelp(
            "Sleep as soon as there is nothing to do, instead of polling for a moment first:"
                + " for nodes that share CPUs with other busy processes, such as several nodes on one machine.")
    )
    var noIdlePoll = false

    @Option(name: .customLong("log-segment-bytes"), help: .hidden)
    var logSegmentBytes: String = "64M"

    @Option(name: .customLong("node-id"), help: "In a cluster: this node's id, one of those in --peers.")
    var nodeID: UInt32?

    @Option(name: .customLong("peer-listen"), help: "In a cluster: the address to accept other nodes on, HOST:PORT.")
    var peerListen: String?

    @Option(
        help:
            ArgumentHelp(
                "In a cluster: every member, this node included, as ID=HOST:PORT (its peer address), comma-separated;"
                    + " /log-only after an address makes that member a log-only replica.")
    )
    var peers: String?

    @Option(
        name: .customLong("cluster-id"),
        help: "In a cluster: its id, given at a node's first start and kept in its data directory.")
    var clusterID: String?

    @Option(
        name: .customLong("cluster-secret-file"),
        help: "In a cluster: a file holding the secret every member proves it knows (required off loopback).")
    var clusterSecretFile: String?

    @Option(name: .customLong("partitions"), help: .hidden)
    var partitions: Int?

    @Option(name: .customLong("tick-ms"), help: .hidden)
    var tickMilliseconds: Int = 50

    /// Tests of the lease's drift bound only: this node's replica clocks run this much
    /// faster (or slower) than the machine's.
    @Option(name: .customLong("clock-rate"), help: .hidden)
    var clockRate: Double = 1

    /// Fault tests only: drop this share of the replication messages this node sends, and
    /// hold each batch back a random time up to --delay-messages-ms.
    @Option(name: .customLong("drop-messages"), help: .hidden)
    var dropMessages: Double = 0

    @Option(name: .customLong("delay-messages-ms"), help: .hidden)
    var delayMessagesMilliseconds: Int = 0

    /// A deliberate bug, for showing that the fault tests catch it: strongly consistent
    /// reads answered by any replica.
    @Flag(name: .customLong("unsafe-follower-reads"), help: .hidden)
    var unsafeFollowerReads = false

    /// Fault tests only: the process exits once this many participants have applied a
    /// transaction it coordinates.
    @Option(name: .customLong("exit-after-transaction-applies"), help: .hidden)
    var exitAfterTransactionApplies: Int?

    /// A deliberate bug: a transaction's lock left by its coordinator is aborted without
    /// reading the decision.
    @Flag(name: .customLong("unsafe-abort-unfinished-transactions"), help: .hidden)
    var unsafeAbortUnfinishedTransactions = false

    func run() throws {
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        let logger = Logger(label: "granary")
        guard let address = SocketAddress(listen) else {
            throw ValidationError("--listen must be HOST:PORT with a numeric host or localhost, not '\(listen)'")
        }
        var configuration = NodeConfiguration(listen: address, dataDirectory: dataDirectory)
        if let cores {
            guard let cpus = NodeConfiguration.parseCPUList(cores) else {
                throw ValidationError("--cores must be a list such as 0,2-3, not '\(cores)'")
            }
            let available = Set(ReactorGroup.availableCPUs())
            if let missing = cpus.first(where: { !available.contains($0) }) {
                throw ValidationError(
                    "--cores names CPU \(missing), which this process may not use (it may use \(available.sorted()))")
            }
            configuration.cpus = cpus
        }

        guard let memoryBytes = Self.parseBytes(memory), memoryBytes >= 32 << 20 else {
            throw ValidationError("--memory must be a size of at least 32M, such as 512M or 2G, not '\(memory)'")
        }
        configuration.memoryBytes = memoryBytes
        guard let segmentBytes = Self.parseBytes(logSegmentBytes), segmentBytes >= 1 << 20, segmentBytes % 4096 == 0
        else {
            throw ValidationError("--log-segment-bytes must be at least 1M and a multiple of 4096")
        }
        configuration.logSegmentBytes = segmentBytes
        if let credentials {
            do {
                configuration.credentials = try SigV4Verifier.load(path: credentials)
            } catch {
                throw ValidationError("--credentials: \(error)")
            }
        }

        configuration.cluster = try clusterConfiguration()
        configuration.pollsWhenIdle = !noIdlePoll

        // SIGINT and SIGTERM are blocked in every thread (reactors inherit the mask) and
        // taken here by sigwait, so a stop request is an ordinary return, not a handler.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        signal(SIGPIPE, SIG_IGN)

        let node: Node
        do {
            node = try Node(configuration: configuration, logger: logger)
        } catch {
            FileHandleStandardError.write("\(error)\n")
            throw ExitCode(1)
        }
        if configuration.credentials == nil {
            logger.warning(
                "no credentials are configured: any request signature is accepted (like DynamoDB Local); --credentials FILE requires SigV4"
            )
        }
        if let cluster = configuration.cluster {
            logger.info("node \(cluster.node) of the cluster, peers on \(cluster.peerListen)")
        }
        logger.info(
            "granary listening on http://\(address) with \(configuration.cpus.count) cores, data in \(dataDirectory)")
        var received: Int32 = 0
        sigwait(&signals, &received)
        logger.info("received signal \(received), stopping")
        node.stop()
        logger.info("stopped")
    }
}

extension Serve {
    /// The cluster this node is a member of, from the cluster options; nil when none is
    /// given (a node on its own).
    func clusterConfiguration() throws -> ClusterConfiguration? {
        guard nodeID != nil || peerListen != nil || peers != nil else {
            guard clusterID == nil, clusterSecretFile == nil else {
                throw ValidationError(
                    "--cluster-id and --cluster-secret-file need --node-id, --peer-listen and --peers")
            }
            return nil
        }
        guard let nodeID, let peerListen, let peers else {
            throw ValidationError("a cluster member needs all of --node-id, --peer-listen and --peers")
        }
        guard let address = SocketAddress(peerListen) else {
            throw ValidationError(
                "--peer-listen must be HOST:PORT with a numeric host or localhost, not '\(peerListen)'")
        }
        let members: [UInt32: ClusterConfiguration.Member]
        switch ClusterConfiguration.parseMembers(peers) {
        case .success(let parsed): members = parsed
        case .failure(let problem): throw ValidationError("--peers: \(problem)")
        }
        guard members[nodeID] != nil else { throw ValidationError("--peers does not name this node (\(nodeID))") }
        var cluster = ClusterConfiguration(node: nodeID, peerListen: address, members: members)
        cluster.clusterID = clusterID
        if let clusterSecretFile {
            guard let text = try? String(contentsOfFile: clusterSecretFile, encoding: .utf8) else {
                throw ValidationError("--cluster-secret-file: cannot read \(clusterSecretFile)")
            }
            let secret = Array(text.trimmingCharacters(in: .whitespacesAndNewlines).utf8)
            guard secret.count >= 16 else {
                throw ValidationError("--cluster-secret-file: the secret must be at least 16 characters")
            }
            cluster.secret = secret
        } else {
            let addresses = [address] + members.values.map(\.peerAddress)
            guard addresses.allSatisfy(ClusterConfiguration.isLoopback) else {
                throw ValidationError(
                    "a cluster reachable off loopback needs --cluster-secret-file:"
                        + " anyone who can reach the peer port could join it"
                )
            }
        }
        if let partitions {
            guard (1...1024).contains(partitions) else { throw ValidationError("--partitions must be 1 to 1024") }
            cluster.partitions = partitions
        }
        guard (5...1000).contains(tickMilliseconds) else { throw ValidationError("--tick-ms must be 5 to 1000") }
        cluster.tick = .milliseconds(tickMilliseconds)
        guard clockRate >= 0.5 && clockRate <= 2 else { throw ValidationError("--clock-rate must be 0.5 to 2") }
        cluster.clockRate = clockRate
        cluster.unsafeFollowerReads = unsafeFollowerReads
        if let exitAfterTransactionApplies, !(0...100).contains(exitAfterTransactionApplies) {
            throw ValidationError("--exit-after-transaction-applies must be 0 to 100")
        }
        cluster.transactionFaults.exitAfterApplies = exitAfterTransactionApplies
        cluster.transactionFaults.abortsUnread = unsafeAbortUnfinishedTransactions
        guard dropMessages >= 0 && dropMessages < 1 else {
            throw ValidationError("--drop-messages must be at least 0 and below 1")
        }
        guard (0...10_000).contains(delayMessagesMilliseconds) else {
            throw ValidationError("--delay-messages-ms must be 0 to 10000")
        }
        cluster.messageDrop = dropMessages
        cluster.messageDelay = .milliseconds(delayMessagesMilliseconds)
        return cluster
    }

    /// "512M", "2G", "65536" → bytes.
    static func parseBytes(_ text: String) -> Int? {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        if let last = text.uppercased().last, let unit = units[last] {
            return Int(text.dropLast()).flatMap { $0 > 0 && $0 < (1 << 40) / unit ? $0 * unit : nil }
        }
        return Int(text)
    }
}

enum FileHandleStandardError {
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in _ = Glibc.write(2, bytes.baseAddress, bytes.count) }
    }
}
