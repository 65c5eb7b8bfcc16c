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

    @Option(name: .customLong("log-segment-bytes"), help: .hidden)
    var logSegmentBytes: String = "64M"

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
