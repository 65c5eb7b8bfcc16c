import GranaryIO
import Glibc
import Logging

/// Answers one HTTP request. Runs on the core that owns the connection.
public typealias HTTPHandler = @Sendable (HTTPRequest) async -> HTTPResponse

/// The index of the core that should answer a request (the one that owns its data), or
/// nil when any core may. Called on the core that received it, before the handler; it may
/// keep what it parsed in the request (`parsedBody`) for the handler.
public typealias HTTPRouter = @Sendable (inout HTTPRequest) -> Int?

/// The HTTP/1.1 server of one core: it accepts on that core's listener and serves each
/// connection as a task on that core, with keep-alive, pipelining, `Expect: 100-continue`,
/// bounded sizes and an idle timeout.
///
/// A request that another core should answer (`router`) takes its connection there: the
/// connection's task ends here and a new one on that core answers the request and reads
/// the next. One message, where answering here cost a call to the other core and its
/// reply (BENCHMARKS.md, "The API").
public final class HTTPServer: @unchecked Sendable {
    // @unchecked: `openConnections` is touched only on `reactor`'s thread; `peers` is set
    // once, before `start`.
    private let reactor: Reactor
    private let handler: HTTPHandler
    private let router: HTTPRouter?
    private let logger: Logger
    private var openConnections = 0
    private let isolation: CoreIsolation
    /// The servers of every core, by reactor index (this one included).
    private var peers: [HTTPServer] = []

    public init(reactor: Reactor, logger: Logger, router: HTTPRouter? = nil, handler: @escaping HTTPHandler) {
        self.reactor = reactor
        self.handler = handler
        self.router = router
        self.logger = logger
        isolation = CoreIsolation(reactor: reactor)
    }

    /// Names the servers of every core, indexed by reactor index, for connections to move
    /// to. Call once, before `start` on any of them.
    public func join(_ servers: [HTTPServer]) {
        precondition(peers.isEmpty && servers.indices.contains(reactor.index) && servers[reactor.index] === self)
        peers = servers
    }

    /// Starts accepting on `listener`. Call on the reactor's thread.
    public func start(listener: Int32) {
        reactor.acceptConnections(on: listener) { [self] completion in
            guard completion.result >= 0 else {
                if completion.result != -ECANCELED {
                    logger.warning("accept failed on core \(reactor.index): \(Errno(result: completion.result))")
                }
                if !completion.hasMore && completion.result != -ECANCELED {
                    start(listener: listener)  // the kernel ended the multishot: re-arm it
                }
                return
            }
            let connection = completion.result
            guard openConnections < HTTPLimits.connectionsPerCoreMax else {
                Glibc.close(connection)
                return
            }
            let buffer = ConnectionBuffer(capacity: HTTPLimits.receiveBufferInitialBytes)
            adopt(MovingConnection(descriptor: completion.result, buffer: buffer, first: nil))
            if !completion.hasMore { start(listener: listener) }
        }
    }

    /// Serves `connection` on this core from now on. Call on this reactor's thread. A
    /// connection moved here counts here; the bound at accept keeps the node's total within
    /// `HTTPLimits.connectionsPerCoreMax` per core.
    private func adopt(_ connection: MovingConnection) {
        openConnections += 1
        Task(executorPreference: reactor) { [isolation] in
            await self.serve(connection, isolation: isolation)
            self.openConnections -= 1
        }
    }

    private func serve(_ moving: MovingConnection, isolation: isolated CoreIsolation) async {
        let connection = moving.descriptor
        let buffer = moving.buffer
        var handedOver = false
        defer { if !handedOver { Glibc.close(connection) } }
        var needed = 1  // unread bytes the parser needs before it can say more
        var sentContinue = false
        var pendingOutput: [UInt8] = []
        var first = moving.first
        while true {
            let parsed: HTTPParser.Outcome
            if let request = first {
                parsed = .request(request, consumed: 0)
                first = nil
            } else {
                parsed = HTTPParser().parse(buffer.unread)
            }
            switch parsed {
            case .request(var request, let consumed):
                buffer.consume(consumed)
                sentContinue = false
                needed = 1
                if peers.count > 1, let core = router?(&request), core != reactor.index, peers.indices.contains(core) {
                    // What was answered before goes out first: responses keep their order.
                    if !pendingOutput.isEmpty {
                        guard await send(pendingOutput, on: connection) else { return }
                        pendingOutput.removeAll(keepingCapacity: true)
                    }
                    let peer = peers[core]
                    let moved = MovingConnection(descriptor: connection, buffer: buffer, first: request)
                    if peer.reactor.tryPost({ peer.adopt(moved) }) {
                        handedOver = true
                        return
                    }
                    // The other core's inbox is full: answer here, through a call to it.
                }
                let response = await handler(request)
                precondition(reactor.isOwnerThread, "a connection's task left its core")
                let keepAlive = request.keepAlive
                pendingOutput += response.serialized(version: request.version, keepAlive: keepAlive)
                if !keepAlive {
                    _ = await send(pendingOutput, on: connection)
                    return
                }
                continue  // a pipelined request may already be in the buffer
            case .needBody(let requestBytes, let expectsContinue):
                needed = requestBytes
                if expectsContinue && !sentContinue {
                    pendingOutput += HTTPResponse.continueBytes
                    sentContinue = true
                }
            case .needMore:
                needed = buffer.unread.count + 1
            case .failure(let error):
                pendingOutput += Self.errorResponse(error).serialized(keepAlive: false)
                _ = await send(pendingOutput, on: connection)
                return
            }
            // Everything parsed so far is answered before waiting for more input: one send
            // carries all the responses to a pipelined burst.
            if !pendingOutput.isEmpty {
                guard await send(pendingOutput, on: connection) else { return }
                pendingOutput.removeAll(keepingCapacity: true)
            }
            guard
                let space = buffer.freeSpace(
                    forUnreadTotal: needed, limit: HTTPLimits.headerBytesMax + 4 + HTTPLimits.bodyBytesMax)
            else {
                _ = await send(Self.errorResponse(.bodyTooLarge).serialized(keepAlive: false), on: connection)
                return
            }
            do throws(Errno) {
                let count = try await reactor.receive(connection, into: space, timeout: HTTPLimits.idleTimeout)
                if count == 0 { return }  // the client closed
                buffer.didReceive(count)
            } catch {
                return  // reset, or idle past the timeout (ECANCELED)
            }
        }
    }

    /// Sends `bytes`; false when the connection is gone.
    private func send(_ bytes: [UInt8], on connection: Int32) async -> Bool {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 16)
        defer { storage.deallocate() }
        storage.copyBytes(from: bytes)
        do throws(Errno) {
            try await reactor.sendAll(connection, UnsafeRawBufferPointer(storage))
            return true
        } catch {
            return false
        }
    }

    static func errorResponse(_ error: HTTPParseError) -> HTTPResponse {
        HTTPResponse(
            status: error.status, headers: [("Content-Type", "text/plain")],
            body: Array("\(error.message)\n".utf8))
    }
}

/// A connection on its way to the core that serves it next: the socket, what it has
/// received and not yet parsed, and the request it was moved for (parsed, not yet
/// answered). Owned by one core at a time: the sender lets go of it when it posts it.
struct MovingConnection: @unchecked Sendable {
    let descriptor: Int32
    let buffer: ConnectionBuffer
    let first: HTTPRequest?
}

/// The isolation of a core's connection tasks: an actor whose executor is the core's
/// reactor. The partitions and stores of the core are actors on that same executor, so a
/// call from a connection into them starts at once, where a call from a task without an
/// actor went through the reactor's job queue and a turn of the loop, at each hop.
actor CoreIsolation {
    nonisolated let reactor: Reactor
    nonisolated var unownedExecutor: UnownedSerialExecutor { reactor.asUnownedSerialExecutor() }

    init(reactor: Reactor) {
        self.reactor = reactor
    }
}
