import GranaryIO
import Glibc
import Logging

/// Answers one HTTP request. Runs on the core that owns the connection.
public typealias HTTPHandler = @Sendable (HTTPRequest) async -> HTTPResponse

/// The HTTP/1.1 server of one core: it accepts on that core's listener and serves each
/// connection as a task on that core, with keep-alive, pipelining, `Expect: 100-continue`,
/// bounded sizes and an idle timeout.
public final class HTTPServer: @unchecked Sendable {
    // @unchecked: `openConnections` is touched only on `reactor`'s thread.
    private let reactor: Reactor
    private let handler: HTTPHandler
    private let logger: Logger
    private var openConnections = 0
    private let isolation: CoreIsolation

    public init(reactor: Reactor, logger: Logger, handler: @escaping HTTPHandler) {
        self.reactor = reactor
        self.handler = handler
        self.logger = logger
        isolation = CoreIsolation(reactor: reactor)
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
            openConnections += 1
            Task(executorPreference: reactor) { [isolation] in
                await self.serve(connection, isolation: isolation)
                self.openConnections -= 1
            }
            if !completion.hasMore { start(listener: listener) }
        }
    }

    private func serve(_ connection: Int32, isolation: isolated CoreIsolation) async {
        let buffer = ConnectionBuffer(capacity: HTTPLimits.receiveBufferInitialBytes)
        defer { Glibc.close(connection) }
        var needed = 1  // unread bytes the parser needs before it can say more
        var sentContinue = false
        var pendingOutput: [UInt8] = []
        while true {
            switch HTTPParser().parse(buffer.unread) {
            case .request(let request, let consumed):
                buffer.consume(consumed)
                sentContinue = false
                needed = 1
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
            guard let space = buffer.freeSpace(forUnreadTotal: needed, limit: HTTPLimits.headerBytesMax + 4 + HTTPLimits.bodyBytesMax) else {
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
        HTTPResponse(status: error.status, headers: [("Content-Type", "text/plain")],
                     body: Array("\(error.message)\n".utf8))
    }
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
