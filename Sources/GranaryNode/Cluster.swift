import Foundation
import GranaryCommands
import GranaryIO
import GranaryModel
import GranaryPartition
import GranaryPaxos
import GranaryReplication
import GranaryRouter
import GranaryTransport
import Logging

/// This node in its cluster: the peer network, what travels on it, and the partitions'
/// replicas at either end. It runs on the node's home core.
///
/// Three kinds of frame travel between nodes:
/// - `replication`: one partition's Paxos messages from one replica to another
///   (`Envelope`'s binary form), handed to the partition's driver on its core;
/// - `request`: a `PartitionRequest` forwarded to the node whose replica leads the
///   partition, which runs it like its own router would (`LocalPartitions`);
/// - `reply`: the answer, matched to its request by a call id;
/// - `httpRequest` and `httpResponse`: a client's request sent whole to the node whose
///   replica leads its item's partition (`RequestForwarder`), and the response it gave.
public actor Cluster {
    enum FrameKind {
        static let replication: UInt8 = 1
        static let request: UInt8 = 2
        static let reply: UInt8 = 3
        static let httpRequest: UInt8 = 4
        static let httpResponse: UInt8 = 5
        /// A fragment of a replication frame too large to go whole (`Fragments`), after
        /// the partition's index.
        static let replicationFragment: UInt8 = 6
    }

    /// The most a fragmented replication message (a replica's snapshot) may hold, and all
    /// of those being put together at once.
    static let fragmentedBytesMax = 1 << 30
    static let reassemblyBytesMax = 2 << 30

    /// What answers a call: a partition's reply, or a forwarded request's response.
    enum Answer {
        case reply(PartitionReply)
        case response(HTTPResponse)
    }

    /// Why a forwarded request has no reply.
    enum CallFailure: Error {
        /// The partition answered with this error (a refusal, or the request's own error).
        case refused(DynamoError)
        /// It never left: the peer is unreachable or its queue is full. Nothing happened.
        case unsent
        /// It left, and no answer came back in time: it may or may not have happened.
        case unanswered
    }

    nonisolated let home: Reactor
    public nonisolated var unownedExecutor: UnownedSerialExecutor { home.asUnownedSerialExecutor() }
    public nonisolated let configuration: ClusterConfiguration
    nonisolated let network: PeerNetwork
    /// One replica environment per partition, kept here (drivers hold theirs weakly).
    nonisolated let links: [ReplicaLink]
    private let logger: Logger
    private var partitions: [Partition] = []
    private var local: LocalPartitions?
    /// Each core's DynamoDB service, by reactor index: forwarded requests are answered
    /// by the service of the core that holds their partition.
    private var services: [(service: DynamoService, reactor: Reactor)] = []
    private var nextCall: UInt64 = 1
    /// Fragmented replication messages being put together, by peer and partition.
    private var reassemblies: [String: Reassembly] = [:]
    private var calls: [UInt64: Call] = [:]
    private let encoder = JSONEncoder()
    private let decoder = JSONDecoder()

    struct Call {
        var peer: UInt32
        var deadline: ContinuousClock.Instant
        var waiter: UnsafeContinuation<Result<Answer, CallFailure>, Never>?
        var outcome: Result<Answer, CallFailure>?
    }

    /// How long a forwarded request waits for its answer, and how many may wait at once.
    static let callTimeout = Duration.seconds(10)
    static let callsMax = 65536

    init(
        home: Reactor, configuration: ClusterConfiguration, clusterID: String, partitionCount: Int,
        dataDirectory: String, logger: Logger
    ) {
        self.home = home
        self.configuration = configuration
        self.logger = logger
        var peers: [UInt32: SocketAddress] = [:]
        for (id, member) in configuration.members where id != configuration.node { peers[id] = member.peerAddress }
        // The partition count is part of the cluster's identity: nodes that split the
        // data differently must not replicate it to each other.
        let network = PeerNetwork(
            reactor: home,
            identity: PeerIdentity(
                cluster: "\(clusterID)/partitions=\(partitionCount)", node: configuration.node,
                secret: configuration.secret),
            peers: peers, logger: logger)
        self.network = network
        links = (0..<partitionCount).map {
            ReplicaLink(
                partition: $0, home: home, network: network, directory: "\(dataDirectory)/partition-\($0)",
                drop: configuration.messageDrop, delay: configuration.messageDelay)
        }
    }

    /// Starts the peer network once the partitions are open. Call on the home core.
    func start(partitions: [Partition], local: LocalPartitions, listener: Int32) {
        self.partitions = partitions
        self.local = local
        network.start(listener: listener) { [self] peer, kind, payload in
            assumeIsolated { $0.received(kind: kind, payload: payload, from: peer) }
        }
        Task { await sweepCalls() }
    }

    /// Names the services that answer forwarded requests, once they exist.
    func serve(with services: [DynamoService], on reactors: [Reactor]) {
        self.services = Array(zip(services, reactors))
    }

    nonisolated func stop() { network.stop() }

    // MARK: Frames in

    private func received(kind: UInt8, payload: [UInt8], from peer: UInt32) {
        switch kind {
        case FrameKind.replication: deliver(payload, from: peer)
        case FrameKind.replicationFragment: reassemble(payload, from: peer)
        case FrameKind.request: serve(payload, from: peer)
        case FrameKind.reply: settle(payload, from: peer)
        case FrameKind.httpRequest: answer(payload, from: peer)
        case FrameKind.httpResponse: settleHTTP(payload, from: peer)
        default: logger.warning("peer \(peer) sent a frame of unknown kind \(kind)")
        }
    }

    /// Hands a partition's messages to its driver, on its core. A message must come from
    /// the peer that sent the frame (the handshake proved who that is) and be for us.
    private func deliver(_ payload: [UInt8], from peer: UInt32) {
        var reader = WireReader(payload)
        guard let partition = reader.u32().map(Int.init), partitions.indices.contains(partition),
            let driver = partitions[partition].replica
        else { return }
        var envelopes: [Envelope] = []
        while !reader.isAtEnd {
            guard let envelope = Envelope(reading: &reader), envelope.from == peer,
                envelope.to == configuration.node
            else {
                logger.warning("peer \(peer) sent a malformed replication message for partition \(partition)")
                return
            }
            envelopes.append(envelope)
        }
        Task(executorPreference: partitions[partition].reactor) {
            for envelope in envelopes { await driver.receive(envelope) }
        }
    }

    /// Gathers the fragments of a replication frame too large to go whole, and delivers it
    /// once complete, within `reassemblyBytesMax` for all partitions and peers together.
    private func reassemble(_ payload: [UInt8], from peer: UInt32) {
        var reader = WireReader(payload)
        guard let partition = reader.u32().map(Int.init), partitions.indices.contains(partition) else { return }
        let stream = "\(peer)/\(partition)"
        var reassembly = reassemblies[stream] ?? Reassembly(bytesMax: Self.fragmentedBytesMax)
        let others = reassemblies.values.reduce(0) { $0 + $1.reserved } - reassembly.reserved
        let message = reassembly.take(payload[4...]) { others + $0 <= Self.reassemblyBytesMax }
        reassemblies[stream] = reassembly
        if let message { deliver(message, from: peer) }
    }

    /// Runs a forwarded request here, as this node's router would, and sends the reply.
    private func serve(_ payload: [UInt8], from peer: UInt32) {
        var reader = WireReader(payload)
        guard let id = reader.u64(), let partition = reader.u32().map(Int.init), let local,
            let request = try? decoder.decode(PartitionRequest.self, from: Data(payload[12...]))
        else {
            logger.warning("peer \(peer) sent a malformed request")
            return
        }
        Task {
            let result: Result<PartitionReply, DynamoError>
            do throws(DynamoError) {
                result = .success(try await local.send(request, to: partition))
            } catch {
                result = .failure(error)
            }
            reply(id, result, to: peer)
        }
    }

    private func reply(_ id: UInt64, _ result: Result<PartitionReply, DynamoError>, to peer: UInt32) {
        var writer = WireWriter()
        writer.u64(id)
        let body: Data?
        switch result {
        case .success(let reply):
            writer.u8(0)
            body = try? encoder.encode(reply)
        case .failure(let error):
            writer.u8(1)
            body = try? encoder.encode(error)
        }
        guard let body, body.count < Frame.payloadBytesMax - 9 else {
            logger.error("a reply to peer \(peer) does not encode")
            return
        }
        network.send(kind: FrameKind.reply, payload: writer.bytes + body, to: peer)
    }

    private func settle(_ payload: [UInt8], from peer: UInt32) {
        var reader = WireReader(payload)
        guard let id = reader.u64(), let status = reader.u8(), calls[id]?.peer == peer else { return }
        let body = Data(payload[9...])
        let outcome: Result<Answer, CallFailure>
        if status == 0, let reply = try? decoder.decode(PartitionReply.self, from: body) {
            outcome = .success(.reply(reply))
        } else if status == 1, let error = try? decoder.decode(DynamoError.self, from: body) {
            outcome = .failure(.refused(error))
        } else {
            logger.warning("peer \(peer) sent a malformed reply")
            outcome = .failure(.unanswered)
        }
        finish(id, outcome)
    }

    private func finish(_ id: UInt64, _ outcome: Result<Answer, CallFailure>) {
        guard var call = calls[id] else { return }
        if let waiter = call.waiter {
            calls[id] = nil
            waiter.resume(returning: outcome)
        } else {
            call.outcome = outcome
            calls[id] = call
        }
    }

    /// Answers a client's request another node sent whole, with the service of the core
    /// that holds its partition, as if it had come here (its signature was checked there;
    /// the peer proved itself at its handshake).
    private func answer(_ payload: [UInt8], from peer: UInt32) {
        var reader = WireReader(payload)
        guard let id = reader.u64(), let partition = reader.u32().map(Int.init), let local,
            let method = reader.data().flatMap({ String(validating: $0, as: UTF8.self) }),
            let target = reader.data().flatMap({ String(validating: $0, as: UTF8.self) }),
            let count = reader.u32(), Int(count) <= reader.remaining / 8
        else {
            logger.warning("peer \(peer) sent a malformed forwarded request")
            return
        }
        var headers: [(name: String, value: String)] = []
        for _ in 0..<count {
            guard let name = reader.data().flatMap({ String(validating: $0, as: UTF8.self) }),
                let value = reader.data().flatMap({ String(validating: $0, as: UTF8.self) })
            else { return }
            headers.append((name, value))
        }
        guard let body = reader.data(), reader.isAtEnd, !services.isEmpty else { return }
        var request = HTTPRequest(method: method, target: target, version: .http11, headers: headers, body: body)
        request.verified = true
        request.forwarded = true
        let (service, reactor) = services[local.localCore(of: partition) ?? 0]
        Task(executorPreference: reactor) {
            let response = await service.handle(request)
            await self.respond(id, response, to: peer)
        }
    }

    private func respond(_ id: UInt64, _ response: HTTPResponse, to peer: UInt32) {
        var writer = WireWriter()
        writer.u64(id)
        writer.u32(UInt32(response.status.code))
        writer.data(Array(response.status.reason.utf8))
        writer.u32(UInt32(response.headers.count))
        for (name, value) in response.headers {
            writer.data(Array(name.utf8))
            writer.data(Array(value.utf8))
        }
        writer.data(response.body)
        guard writer.bytes.count < Frame.payloadBytesMax else {
            logger.error("a response to peer \(peer) exceeds the frame limit")
            return
        }
        network.send(kind: FrameKind.httpResponse, payload: writer.bytes, to: peer)
    }

    private func settleHTTP(_ payload: [UInt8], from peer: UInt32) {
        var reader = WireReader(payload)
        guard let id = reader.u64(), calls[id]?.peer == peer else { return }
        guard let code = reader.u32(), (100...599).contains(code),
            let reason = reader.data().flatMap({ String(validating: $0, as: UTF8.self) }),
            let count = reader.u32(), Int(count) <= reader.remaining / 8
        else { return finish(id, .failure(.unanswered)) }
        var headers: [(name: String, value: String)] = []
        for _ in 0..<count {
            guard let name = reader.data().flatMap({ String(validating: $0, as: UTF8.self) }),
                let value = reader.data().flatMap({ String(validating: $0, as: UTF8.self) })
            else { return finish(id, .failure(.unanswered)) }
            headers.append((name, value))
        }
        guard let body = reader.data(), reader.isAtEnd else { return finish(id, .failure(.unanswered)) }
        finish(
            id,
            .success(
                .response(
                    HTTPResponse(status: HTTPStatus(code: Int(code), reason: reason), headers: headers, body: body)))
        )
    }

    // MARK: Requests out

    /// Sends `request` for `partition` to `peer` and waits for its answer.
    func call(_ request: PartitionRequest, partition: Int, on peer: UInt32) async -> Result<PartitionReply, CallFailure>
    {
        guard let body = try? encoder.encode(request) else { return .failure(.unsent) }
        var writer = WireWriter()
        writer.u32(UInt32(partition))
        switch await call(kind: FrameKind.request, payload: writer.bytes + body, on: peer) {
        case .success(.reply(let reply)): return .success(reply)
        case .success(.response): return .failure(.unanswered)
        case .failure(let failure): return .failure(failure)
        }
    }

    /// Sends a client's request whole to `peer`, whose replica leads `partition`, and
    /// waits for the response it gives.
    func forward(_ request: HTTPRequest, partition: Int, to peer: UInt32) async -> Result<HTTPResponse, CallFailure> {
        var writer = WireWriter()
        writer.u32(UInt32(partition))
        writer.data(Array(request.method.utf8))
        writer.data(Array(request.target.utf8))
        writer.u32(UInt32(request.headers.count))
        for (name, value) in request.headers {
            writer.data(Array(name.utf8))
            writer.data(Array(value.utf8))
        }
        writer.data(request.body)
        switch await call(kind: FrameKind.httpRequest, payload: writer.bytes, on: peer) {
        case .success(.response(let response)): return .success(response)
        case .success(.reply): return .failure(.unanswered)
        case .failure(let failure): return .failure(failure)
        }
    }

    /// Sends a call's frame (its id first) and waits for the answer.
    private func call(kind: UInt8, payload: [UInt8], on peer: UInt32) async -> Result<Answer, CallFailure> {
        guard calls.count < Self.callsMax, payload.count < Frame.payloadBytesMax - 8 else { return .failure(.unsent) }
        let id = nextCall
        nextCall += 1
        var writer = WireWriter()
        writer.u64(id)
        guard network.send(kind: kind, payload: writer.bytes + payload, to: peer) else {
            return .failure(.unsent)
        }
        calls[id] = Call(peer: peer, deadline: .now + Self.callTimeout)
        // The answer may come before the body runs: other jobs of this core may run first.
        return await withUnsafeContinuation { waiter in
            if let outcome = calls[id]?.outcome {
                calls[id] = nil
                waiter.resume(returning: outcome)
            } else if calls[id] == nil {
                waiter.resume(returning: .failure(.unanswered))
            } else {
                calls[id]!.waiter = waiter
            }
        }
    }

    /// Twice a second, fails the calls whose time is up or whose peer went away.
    private func sweepCalls() async {
        while true {
            do { try await home.sleep(for: .milliseconds(500)) } catch { return }
            let now = ContinuousClock.now
            for (id, call) in calls where call.outcome == nil {
                if now >= call.deadline || !network.isConnected(call.peer) { finish(id, .failure(.unanswered)) }
            }
        }
    }

    /// The node's view of the cluster, for `GET /cluster`: the members (with this node's
    /// API address, and whether each peer is reachable from here) and each partition's
    /// leader and ballot as this node's replica knows them, with every replica's role and
    /// chosen and applied slots: this node's, and those the reachable peers report.
    func status(partitions: [Partition], api: SocketAddress) async -> JSON {
        var nodes: [JSON] = []
        for id in configuration.voters {
            let member = configuration.members[id]!
            var entry: [String: JSON] = [
                "id": .number(String(id)), "peer": .string(member.peerAddress.description),
                "logOnly": .bool(member.logOnly),
                "reachable": .bool(id == configuration.node || network.isConnected(id)),
            ]
            if id == configuration.node {
                entry["api"] = .string(api.description)
                entry["self"] = .bool(true)
            }
            nodes.append(.object(entry))
        }
        let peers = await peerReports(partitions: partitions.count)
        var groups: [JSON] = []
        for partition in partitions {
            guard let driver = partition.replica, let own = await partition.replicaReport() else { continue }
            let status = await driver.status
            let reports = ([own] + (peers.reports[partition.index] ?? [])).sorted { $0.node < $1.node }
            groups.append(
                .object([
                    "index": .number(String(partition.index)),
                    "leader": status.leader.map { .number(String($0)) } ?? .null,
                    "ballot": .string(status.promised.description),
                    "replicas": .array(reports.map(Self.json)),
                ]))
        }
        return .object([
            "node": .number(String(configuration.node)), "nodes": .array(nodes), "partitions": .array(groups),
        ])
    }

    static func json(_ report: ReplicaReport) -> JSON {
        var replica: [String: JSON] = [
            "node": .number(String(report.node)), "role": .string(report.role),
            "chosen": .number(String(report.chosen)), "applied": .number(String(report.applied)),
        ]
        if let failure = report.failure { replica["failure"] = .string(failure) }
        return .object(replica)
    }

    /// What the reachable peers say of their replicas, asked all at once. A peer that has
    /// not answered within a second is left out: a paused node would otherwise hold the
    /// page for the call timeout.
    private func peerReports(partitions count: Int) async -> PeerReports {
        let collected = PeerReports()
        for peer in configuration.voters where peer != configuration.node && network.isConnected(peer) {
            for index in 0..<count {
                collected.pending += 1
                Task(executorPreference: home) { [self] in
                    if case .success(.replica(let report?)) = await call(.replicaStatus, partition: index, on: peer),
                        report.node == peer
                    {
                        collected.reports[index, default: []].append(report)
                    }
                    collected.pending -= 1
                }
            }
        }
        let deadline = ContinuousClock.now + .seconds(1)
        while collected.pending > 0 && ContinuousClock.now < deadline {
            guard (try? await home.sleep(for: .milliseconds(5))) != nil else { break }
        }
        return collected
    }

    /// Whether this node's connection to `peer` is up (this node reaches itself). Safe from
    /// any core.
    nonisolated func isReachable(_ peer: UInt32) -> Bool {
        peer == configuration.node || network.isConnected(peer)
    }
}

/// Replica reports gathered from peers for one `GET /cluster`; used on the home core only.
final class PeerReports: @unchecked Sendable {
    var reports: [Int: [ReplicaReport]] = [:]
    var pending = 0
}

/// A partition replica's way out: its messages, in their binary form, to the peer
/// network on the home core, one frame per recipient.
final class ReplicaLink: ReplicaEnvironment, @unchecked Sendable {  // immutable after init
    let partition: Int
    let home: Reactor
    let network: PeerNetwork

    /// The partition's directory, where its recovery mark is.
    let directory: String
    /// Fault tests only (`ClusterConfiguration.messageDrop`, `messageDelay`).
    let drop: Double
    let delay: Duration

    init(partition: Int, home: Reactor, network: PeerNetwork, directory: String, drop: Double, delay: Duration) {
        self.partition = partition
        self.home = home
        self.network = network
        self.directory = directory
        self.drop = drop
        self.delay = delay
    }

    func recovered(at: NodeID) { RecoveryMark.remove(in: directory) }

    func canReach(_ peer: NodeID) -> Bool { network.isConnected(peer) }

    /// A frame above this many bytes goes in fragments, a few at a time (`LargeSends`).
    static let fragmentAbove = 4 << 20

    /// Large frames on their way, a fragment at a time.
    let largeSends = LargeSends()

    func send(_ messages: [Envelope], from: NodeID) {
        var frames: [UInt32: WireWriter] = [:]
        for envelope in messages {
            if drop > 0 && Double.random(in: 0..<1) < drop { continue }
            if frames[envelope.to] == nil {
                var writer = WireWriter()
                writer.u32(UInt32(partition))
                frames[envelope.to] = writer
            }
            envelope.encode(to: &frames[envelope.to]!)
        }
        let (network, home, largeSends, partition) = (network, home, largeSends, partition)
        let payloads = frames.map { ($0.key, $0.value.bytes) }
        let post: @Sendable () -> Void = {
            for (peer, payload) in payloads {
                if payload.count > Self.fragmentAbove {
                    largeSends.start(payload, partition: partition, to: peer, over: network, on: home)
                } else {
                    network.send(kind: Cluster.FrameKind.replication, payload: payload, to: peer)
                }
            }
        }
        // A message that cannot go is lost, which Paxos tolerates: it resends.
        if delay > .zero {
            let wait = Duration.microseconds(Int64.random(in: 0...Int64(delay / .microseconds(1))))
            let home = home
            _ = home.tryPost {
                Task(executorPreference: home) { if (try? await home.sleep(for: wait)) != nil { post() } }
            }
        } else if home.isOwnerThread {
            post()
        } else {
            _ = home.tryPost(post)
        }
    }
}

/// One partition's replication frames too large to go whole (a snapshot, appends of
/// large entries), each sent a fragment at a time while its peer's queue has room, so
/// that they never crowd out the small frames (heartbeats, votes) that share the
/// connection: those overtake them, a reordering Paxos tolerates. A peer's large frames
/// go one after another, within `waitingBytesMax`; one that cannot (too many waiting, or
/// no progress for `stalledAfter`: the peer went away) is dropped, as a lost message is,
/// and Paxos resends. Used on the home core only.
final class LargeSends: @unchecked Sendable {
    struct Transfer {
        var id: UInt64
        var payload: [UInt8]
        var offset = 0
        var progressed = ContinuousClock.now
    }

    /// A peer's queue is fed while it holds less than this.
    static let queuedBytesMax = 2 << 20
    static let waitingBytesMax = 1 << 30
    static let stalledAfter = Duration.seconds(10)

    private var transfers: [UInt32: [Transfer]] = [:]
    private var pumping = false
    private var nextID = UInt64.random(in: 1...(1 << 62))

    func start(_ payload: [UInt8], partition: Int, to peer: UInt32, over network: PeerNetwork, on home: Reactor) {
        let waiting = transfers[peer, default: []].reduce(0) { $0 + $1.payload.count }
        guard waiting + payload.count <= Self.waitingBytesMax else { return }
        transfers[peer, default: []].append(Transfer(id: nextID, payload: payload))
        nextID += 1
        guard !pumping else { return }
        pumping = true
        var prefix = WireWriter()
        prefix.u32(UInt32(partition))
        Task(executorPreference: home) { await self.pump(prefix: prefix.bytes, over: network, on: home) }
    }

    private func pump(prefix: [UInt8], over network: PeerNetwork, on home: Reactor) async {
        while !transfers.isEmpty {
            for peer in Array(transfers.keys) {
                guard var transfer = transfers[peer]?.first else { continue }
                while transfer.offset < transfer.payload.count,
                    (network.queuedBytes(to: peer) ?? .max) < Self.queuedBytesMax,
                    network.send(
                        kind: Cluster.FrameKind.replicationFragment,
                        payload: prefix
                            + Fragments.fragment(of: transfer.payload, id: transfer.id, at: transfer.offset),
                        to: peer)
                {
                    transfer.offset += Fragments.bytesMax
                    transfer.progressed = .now
                }
                if transfer.offset >= transfer.payload.count
                    || ContinuousClock.now - transfer.progressed > Self.stalledAfter
                {
                    transfers[peer]!.removeFirst()
                    if transfers[peer]!.isEmpty { transfers[peer] = nil }
                } else {
                    transfers[peer]![0] = transfer
                }
            }
            if !transfers.isEmpty, (try? await home.sleep(for: .milliseconds(1))) == nil { break }
        }
        pumping = false
    }
}
