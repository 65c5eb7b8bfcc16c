import GranaryIO
import GranaryRouter

/// A node's place in a cluster of static membership: its id, where it listens for peers,
/// every member (itself included) with its peer address and whether it is log-only, the
/// cluster's id and secret, and the replicas' timing.
public struct ClusterConfiguration: Sendable {
    public struct Member: Sendable, Equatable {
        public var peerAddress: SocketAddress
        /// A log-only member votes and keeps the log, stores no B-tree, and never leads.
        public var logOnly: Bool
        public init(peerAddress: SocketAddress, logOnly: Bool) {
            self.peerAddress = peerAddress
            self.logOnly = logOnly
        }
    }

    public var node: UInt32
    public var peerListen: SocketAddress
    public var members: [UInt32: Member]
    /// Given at the first start, kept in the data directory, and checked at every start.
    public var clusterID: String?
    /// The shared secret peers prove they hold; empty only when every peer address is
    /// loopback.
    public var secret: [UInt8] = []
    /// A replica clock's tick. Elections, heartbeats and leases count ticks
    /// (`Replica.Configuration`): with 50 ms, a heartbeat every 100 ms, a lease of 500 ms,
    /// and an election after 0.5 to 1 s without a leader.
    public var tick = Duration.milliseconds(50)
    /// How fast this node's replica clocks run against the machine's (tests of the drift
    /// bound only).
    public var clockRate = 1.0
    /// Fault tests only: the share of this node's replication messages it drops, and the
    /// most it holds a batch back (each batch waits a random time up to it, so batches
    /// overtake each other). The transport is TCP; these stand in for a lossy network.
    public var messageDrop = 0.0
    public var messageDelay = Duration.zero
    /// Partitions of a new cluster's data (every node must agree: the handshake checks).
    public var partitions = 6
    /// A deliberate bug, for showing that the fault tests catch one: strongly consistent
    /// reads answered by the receiving node's replica, leader or not.
    public var unsafeFollowerReads = false
    /// Fault tests only: a transaction coordinator that stops half-way, and a deliberate
    /// bug in the resolution of what it leaves.
    public var transactionFaults = TransactionLedger.Faults()

    public init(node: UInt32, peerListen: SocketAddress, members: [UInt32: Member]) {
        self.node = node
        self.peerListen = peerListen
        self.members = members
    }

    /// The voters, in id order, and the log-only ones among them.
    public var voters: [UInt32] { members.keys.sorted() }
    public var logOnly: Set<UInt32> { Set(members.filter { $0.value.logOnly }.keys) }
    /// The members that hold a B-tree and may lead, in id order.
    public var fullReplicas: [UInt32] { voters.filter { !members[$0]!.logOnly } }

    /// Parses `--peers 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT/log-only`; the problem, if any.
    public static func parseMembers(_ text: String) -> Result<[UInt32: Member], ParseFailure> {
        var members: [UInt32: Member] = [:]
        for part in text.split(separator: ",") {
            let pieces = part.split(separator: "=", maxSplits: 1)
            guard pieces.count == 2, let id = UInt32(pieces[0]), id > 0 else {
                return .failure(ParseFailure(description: "'\(part)' is not ID=HOST:PORT (an id from 1)"))
            }
            var address = Substring(pieces[1])
            var logOnly = false
            if address.hasSuffix("/log-only") {
                logOnly = true
                address = address.dropLast("/log-only".count)
            }
            guard let parsed = SocketAddress(String(address)) else {
                return .failure(ParseFailure(description: "'\(address)' is not HOST:PORT"))
            }
            guard members[id] == nil else { return .failure(ParseFailure(description: "node \(id) is named twice")) }
            members[id] = Member(peerAddress: parsed, logOnly: logOnly)
        }
        guard members.count >= 1, members.count <= 9 else {
            return .failure(ParseFailure(description: "a cluster has 1 to 9 members"))
        }
        guard members.values.contains(where: { !$0.logOnly }),
            members.values.filter(\.logOnly).count < members.count - members.count / 2
        else {
            return .failure(ParseFailure(description: "log-only members must leave a full replica and a majority"))
        }
        return .success(members)
    }

    public struct ParseFailure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Whether an address is on the loopback network, where a cluster may run without a
    /// secret (nobody else can reach it).
    public static func isLoopback(_ address: SocketAddress) -> Bool {
        address.host.hasPrefix("127.") || address.host == "::1"
    }
}
