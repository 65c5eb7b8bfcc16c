import Atomics
import Glibc
import GranaryIO
import Logging

/// This node's connections to the other nodes of its cluster, on one reactor: frames out
/// to each peer, and frames in from each, handed to one handler.
///
/// Each node dials every peer and sends only on the connection it dialed; what it
/// receives comes on the connections its peers dialed. So a pair of nodes has two
/// connections, one per direction, and no race decides which of two connections to keep.
/// Every connection opens with `PeerHandshake`: the cluster id and both node ids must
/// match, and each side proves it holds the cluster secret.
///
/// Frames queued for a peer in one loop turn leave together, in one send. A peer's queue
/// is bounded (`sendQueueBytesMax`): a frame that does not fit is dropped and `send` says
/// so, and while a peer is unreachable nothing is queued for it. Replication tolerates the
/// loss (it resends); a forwarded request fails at once instead of waiting.
///
/// A lost peer is noticed in seconds, not the kernel's minutes: a dial gives up after
/// `connectTimeout`, a connection whose sent data goes unacknowledged for
/// `unacknowledgedTimeout` fails, and a connection that brings nothing for `idleTimeout`
/// is closed (an idle dialer sends a keepalive frame every `keepaliveInterval`).
///
/// Everything here runs on `reactor`'s thread (hence @unchecked Sendable): call `send`
/// there, and the handler is called there.
public final class PeerNetwork: @unchecked Sendable {
    public typealias Handler = (_ from: UInt32, _ kind: UInt8, _ payload: [UInt8]) -> Void

    public let reactor: Reactor
    public let identity: PeerIdentity
    /// The peers' addresses, by node id (this node not among them).
    public let peers: [UInt32: SocketAddress]
    public let sendQueueBytesMax: Int
    private let logger: Logger
    private var handler: Handler = { _, _, _ in }
    private var links: [UInt32: Link] = [:]
    private var listener: Int32 = -1
    private var stopped = false
    /// Inbound connections that have not finished their handshake, and the bound on them.
    private var handshaking = 0
    static let handshakingMax = 64
    static let handshakeTimeout = Duration.seconds(5)
    static let connectTimeout = Duration.seconds(1)
    static let unacknowledgedTimeout = Duration.seconds(3)
    static let keepaliveInterval = Duration.milliseconds(500)
    static let idleTimeout = Duration.seconds(3)

    /// The connection this node dialed to one peer, and what waits to go out on it.
    final class Link: @unchecked Sendable {  // touched on the reactor only
        let peer: UInt32
        let address: SocketAddress
        var queue: [UInt8] = []
        /// Read from any core (`isConnected`), written on the reactor.
        let connected = ManagedAtomic(false)
        var writer: UnsafeContinuation<Void, Never>?
        /// Whether nothing was sent since the keepalive ticker last looked.
        var idle = false
        var dropped = 0
        /// Whether the peer's last handshake failed its proof (logged once, not per retry).
        var refusedUs = false
        init(peer: UInt32, address: SocketAddress) { (self.peer, self.address) = (peer, address) }
    }

    public init(
        reactor: Reactor, identity: PeerIdentity, peers: [UInt32: SocketAddress], logger: Logger,
        sendQueueBytesMax: Int = 32 << 20
    ) {
        precondition(peers[identity.node] == nil, "a node is not its own peer")
        self.reactor = reactor
        self.identity = identity
        self.peers = peers
        self.logger = logger
        self.sendQueueBytesMax = sendQueueBytesMax
        for (peer, address) in peers { links[peer] = Link(peer: peer, address: address) }
    }

    /// Accepts peers on `listener` and dials every peer, handing each frame received to
    /// `handler`. Call once, on the reactor's thread.
    public func start(listener: Int32, handler: @escaping Handler) {
        precondition(reactor.isOwnerThread, "the peer network runs on its reactor")
        self.handler = handler
        self.listener = listener
        accept()
        for link in links.values { Task(executorPreference: reactor) { [self] in await dial(link) } }
        Task(executorPreference: reactor) { [self] in await keepLinksAlive() }
    }

    /// Every `keepaliveInterval`, a keepalive frame on each connected link that sent
    /// nothing since the last look.
    private func keepLinksAlive() async {
        while !stopped, (try? await reactor.sleep(for: Self.keepaliveInterval)) != nil {
            for link in links.values where link.connected.load(ordering: .relaxed) {
                if link.idle && link.queue.isEmpty {
                    Frame.append(kind: Frame.keepalive, payload: [], to: &link.queue)
                    link.writer.take()?.resume()
                }
                link.idle = true
            }
        }
    }

    /// Stops dialing and accepting; connections end as the reactor stops.
    public func stop() {
        stopped = true
        for link in links.values { link.writer.take()?.resume() }
    }

    /// Queues a frame for `peer`; false (and nothing queued) when the peer is unknown or
    /// unreachable, or its queue is full.
    @discardableResult
    public func send(kind: UInt8, payload: [UInt8], to peer: UInt32) -> Bool {
        precondition(reactor.isOwnerThread, "the peer network runs on its reactor")
        precondition(kind < Frame.userKindsEnd, "frame kinds from \(Frame.userKindsEnd) are the handshake's")
        guard payload.count <= Frame.payloadBytesMax else {
            logger.error("a frame of \(payload.count) bytes for peer \(peer) exceeds the limit: not sent")
            return false
        }
        guard let link = links[peer], link.connected.load(ordering: .relaxed),
            link.queue.count + Frame.headerBytes + payload.count <= sendQueueBytesMax
        else {
            links[peer]?.dropped += 1
            return false
        }
        Frame.append(kind: kind, payload: payload, to: &link.queue)
        link.writer.take()?.resume()
        return true
    }

    /// The bytes queued for `peer` and not yet written to its connection (nil for an
    /// unknown peer).
    public func queuedBytes(to peer: UInt32) -> Int? {
        precondition(reactor.isOwnerThread, "the peer network runs on its reactor")
        return links[peer]?.queue.count
    }

    /// Whether this node's connection to `peer` is up (it has passed the handshake). Safe
    /// from any thread.
    public func isConnected(_ peer: UInt32) -> Bool { links[peer]?.connected.load(ordering: .relaxed) ?? false }

    // MARK: Dialing

    /// Keeps a connection to the link's peer up and drains its queue into it; after a
    /// failure, dials again after a backoff that doubles up to a second.
    private func dial(_ link: Link) async {
        var backoff = Duration.milliseconds(20)
        while !stopped {
            if let socket = try? await reactor.connect(
                to: link.address, timeout: Self.connectTimeout, unacknowledgedTimeout: Self.unacknowledgedTimeout)
            {
                if await introduce(socket, to: link.peer) {
                    link.connected.store(true, ordering: .relaxed)
                    backoff = .milliseconds(20)
                    await drain(link, into: socket)
                    link.connected.store(false, ordering: .relaxed)
                    link.queue = []
                }
                close(socket)
            }
            if stopped { break }
            try? await reactor.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(1))
        }
    }

    /// The dialer's side of the handshake; whether the peer proved itself.
    private func introduce(_ socket: Int32, to peer: UInt32) async -> Bool {
        let hello = PeerHandshake.Hello(
            cluster: identity.cluster, from: identity.node, to: peer, nonce: PeerHandshake.nonce())
        var reader = FrameReader(socket: socket, reactor: reactor, payloadBytesMax: PeerHandshake.frameBytesMax)
        defer { reader.close() }
        do {
            try await write([(Frame.hello, hello.payload)], to: socket)
            guard let (kind, payload) = try await reader.next(timeout: Self.handshakeTimeout),
                kind == Frame.welcome, payload.count == PeerHandshake.nonceBytes + PeerHandshake.macBytes
            else { return false }
            let acceptorNonce = Array(payload[..<PeerHandshake.nonceBytes])
            let expected = PeerHandshake.mac(
                "accept", secret: identity.secret, hello: hello, acceptorNonce: acceptorNonce)
            let link = links[peer]!
            guard PeerHandshake.matches(Array(payload[PeerHandshake.nonceBytes...]), expected) else {
                if !link.refusedUs {
                    logger.warning("peer \(peer) at \(link.address) failed the handshake: not our cluster secret")
                }
                link.refusedUs = true
                return false
            }
            link.refusedUs = false
            let proof = PeerHandshake.mac("dial", secret: identity.secret, hello: hello, acceptorNonce: acceptorNonce)
            try await write([(Frame.proof, proof)], to: socket)
            return true
        } catch {
            return false
        }
    }

    /// Sends what the link's queue holds, all of it at a time, until a send fails.
    private func drain(_ link: Link, into socket: Int32) async {
        while !stopped {
            if link.queue.isEmpty {
                await withUnsafeContinuation { waiter in
                    if link.queue.isEmpty && !stopped { link.writer = waiter } else { waiter.resume() }
                }
                continue
            }
            let batch = link.queue
            link.queue = []
            link.idle = false
            do { try await write(batch, to: socket) } catch { return }
        }
    }

    private func write(_ frames: [(UInt8, [UInt8])], to socket: Int32) async throws(Errno) {
        var bytes: [UInt8] = []
        for (kind, payload) in frames { Frame.append(kind: kind, payload: payload, to: &bytes) }
        try await write(bytes, to: socket)
    }

    private func write(_ bytes: [UInt8], to socket: Int32) async throws(Errno) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: bytes)
        try await reactor.sendAll(socket, UnsafeRawBufferPointer(buffer))
    }

    // MARK: Accepting

    private func accept() {
        reactor.acceptConnections(on: listener) { [self] completion in
            guard completion.result >= 0 else {
                if !completion.hasMore && completion.result != -ECANCELED && !stopped { accept() }
                return
            }
            let socket = completion.result
            guard handshaking < Self.handshakingMax, !stopped else {
                close(socket)
                return
            }
            handshaking += 1
            Task(executorPreference: reactor) { [self] in await serve(socket) }
        }
    }

    /// An inbound connection: the acceptor's side of the handshake, then every frame to
    /// the handler, until the peer closes or sends something malformed.
    private func serve(_ socket: Int32) async {
        var reader = FrameReader(socket: socket, reactor: reactor, payloadBytesMax: PeerHandshake.frameBytesMax)
        defer {
            reader.close()
            close(socket)
        }
        let peer = await admit(socket, reader: &reader)
        handshaking -= 1
        guard let peer else { return }
        reader.payloadBytesMax = Frame.payloadBytesMax
        while !stopped {
            do {
                guard let (kind, payload) = try await reader.next(timeout: Self.idleTimeout) else { return }
                if kind == Frame.keepalive { continue }
                guard kind < Frame.userKindsEnd else { return }
                handler(peer, kind, payload)
            } catch {
                if case .frame(let problem) = error {
                    logger.warning("closing the connection from peer \(peer): \(problem)")
                }
                return
            }
        }
    }

    /// The acceptor's side of the handshake: the peer that proved itself, or nil.
    private func admit(_ socket: Int32, reader: inout FrameReader) async -> UInt32? {
        do {
            guard let (kind, payload) = try await reader.next(timeout: Self.handshakeTimeout), kind == Frame.hello,
                let hello = PeerHandshake.Hello(payload: payload)
            else { return nil }
            guard hello.cluster == identity.cluster, hello.to == identity.node, peers[hello.from] != nil else {
                logger.warning(
                    "refused a peer claiming node \(hello.from) of cluster \(hello.cluster) to node \(hello.to)")
                return nil
            }
            let nonce = PeerHandshake.nonce()
            let mac = PeerHandshake.mac("accept", secret: identity.secret, hello: hello, acceptorNonce: nonce)
            try await write([(Frame.welcome, nonce + mac)], to: socket)
            guard let (proofKind, proof) = try await reader.next(timeout: Self.handshakeTimeout),
                proofKind == Frame.proof
            else { return nil }
            let expected = PeerHandshake.mac("dial", secret: identity.secret, hello: hello, acceptorNonce: nonce)
            guard PeerHandshake.matches(proof, expected) else {
                logger.warning("refused a peer claiming node \(hello.from): not our cluster secret")
                return nil
            }
            return hello.from
        } catch {
            return nil
        }
    }
}

/// Reads frames from a socket, through a buffer of its own.
struct FrameReader {
    enum Failure: Error {
        case io(Errno)
        case frame(Frame.ParseError)
    }

    let socket: Int32
    let reactor: Reactor
    var payloadBytesMax: Int
    private var pending: [UInt8] = []
    private var start = 0
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)

    init(socket: Int32, reactor: Reactor, payloadBytesMax: Int) {
        self.socket = socket
        self.reactor = reactor
        self.payloadBytesMax = payloadBytesMax
    }

    func close() { buffer.deallocate() }

    /// The next frame; nil when the peer closed the connection.
    mutating func next(timeout: Duration?) async throws(Failure) -> (UInt8, [UInt8])? {
        while true {
            do throws(Frame.ParseError) {
                if let (kind, payload, end) = try Frame.parse(pending, from: start, payloadBytesMax: payloadBytesMax) {
                    start = end
                    if start == pending.count {
                        pending.removeAll(keepingCapacity: true)
                        start = 0
                    }
                    return (kind, payload)
                }
            } catch {
                throw .frame(error)
            }
            if start > 0 {
                pending.removeFirst(start)
                start = 0
            }
            let count: Int
            do { count = try await reactor.receive(socket, into: buffer, timeout: timeout) } catch { throw .io(error) }
            if count == 0 { return nil }
            pending += UnsafeRawBufferPointer(rebasing: buffer[..<count])
        }
    }
}
