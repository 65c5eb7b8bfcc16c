import CShims
import Glibc
import GranaryIO
import Synchronization
import Testing

@Suite struct ReactorTests {
    @Test func noOperationRoundTripResumesOnTheSameCore() async throws {
        try await withReactors(1) { group in
            let reactor = group.reactors[0]
            let resumedHere = try await onReactor(reactor) {
                var allHere = true
                for _ in 0..<1000 {
                    let completion = await reactor.noOperation()
                    allHere = allHere && completion.result == 0 && reactor.isOwnerThread
                }
                return allHere
            }
            #expect(resumedHere)
        }
    }

    @Test func aReactorBusyForLongOffersItsCPU() async throws {
        try await withReactors(1) { group in
            let reactor = group.reactors[0]
            let yields = try await onReactor(reactor) {
                // Completions keep the loop busy (it never sleeps) for 20 of its yield intervals.
                let start = ContinuousClock.now
                let busy = Duration.nanoseconds(Int64(20 * IOLimits.runBeforeYieldNanoseconds))
                let before = reactor.yields
                while ContinuousClock.now - start < busy {
                    _ = await reactor.noOperation()
                }
                return reactor.yields - before
            }
            #expect(yields >= 1)
        }
    }

    @Test func directIOWriteReadRoundTripWithChecksums() async throws {
        let directory = try makeDiskDirectory()
        try await withReactors(1) { group in
            let reactor = group.reactors[0]
            let mismatches = try await onReactor(reactor) {
                let pool = try AlignedBufferPool(reactor: reactor, bufferSize: 4096, bufferCount: 8)
                let file = try await reactor.openFile(
                    directory + "/direct.dat", flags: O_RDWR | O_CREAT | granary_O_DIRECT)
                try await reactor.allocate(file, offset: 0, length: 64 * 4096)
                var checksums: [UInt32] = []
                let buffer = pool.acquire()!
                for block in 0..<64 {
                    // Each block: random bytes, then their CRC32C in the last four.
                    for byte in 0..<4092 {
                        buffer.pointer.storeBytes(of: UInt8.random(in: 0...255), toByteOffset: byte, as: UInt8.self)
                    }
                    let crc = granary_crc32c(0, buffer.pointer, 4092)
                    buffer.pointer.storeBytes(of: crc, toByteOffset: 4092, as: UInt32.self)
                    checksums.append(crc)
                    let written = try await reactor.write(file, from: buffer, count: 4096, at: UInt64(block * 4096))
                    precondition(written == 4096)
                }
                try await reactor.synchronizeData(file)
                var mismatches = 0
                for block in (0..<64).shuffled() {
                    memset(buffer.pointer, 0, 4096)
                    let read = try await reactor.read(file, into: buffer, count: 4096, at: UInt64(block * 4096))
                    let stored = buffer.pointer.load(fromByteOffset: 4092, as: UInt32.self)
                    if read != 4096 || stored != checksums[block] || granary_crc32c(0, buffer.pointer, 4092) != stored {
                        mismatches += 1
                    }
                }
                pool.release(buffer)
                try await reactor.close(file)
                return mismatches
            }
            #expect(mismatches == 0)
        }
    }

    @Test func directIORejectsUnalignedOffsets() async throws {
        let directory = try makeDiskDirectory()
        try await withReactors(1) { group in
            let reactor = group.reactors[0]
            let error = try await onReactor(reactor) { () -> Errno? in
                let pool = try AlignedBufferPool(reactor: reactor, bufferSize: 4096, bufferCount: 1)
                let file = try await reactor.openFile(
                    directory + "/unaligned.dat", flags: O_RDWR | O_CREAT | granary_O_DIRECT)
                defer { Glibc.close(file) }
                do throws(Errno) {
                    _ = try await reactor.write(file, from: pool.acquire()!, count: 4096, at: 100)
                    return nil
                } catch {
                    return error
                }
            }
            #expect(error == .invalidArgument)
        }
    }

    @Test func durableWritesAndDataSyncComplete() async throws {
        let directory = try makeDiskDirectory()
        try await withReactors(1) { group in
            let reactor = group.reactors[0]
            let size = try await onReactor(reactor) {
                let file = try await reactor.openFile(directory + "/sync.dat", flags: O_RDWR | O_CREAT)
                let data = OwnedBytes([UInt8](repeating: 7, count: 1000))
                for round in 0..<10 {
                    _ = try await reactor.write(
                        file, from: data.bytes, at: UInt64(round * 1000), durable: round % 2 == 0)
                    try await reactor.synchronizeData(file)
                }
                var status = stat()
                fstat(file, &status)
                try await reactor.close(file)
                return Int(status.st_size)
            }
            #expect(size == 10_000)
        }
    }

    @Test func timersFireInDeadlineOrderAndCancel() async throws {
        try await withReactors(1) { group in
            let reactor = group.reactors[0]
            let fired = FiredTimers()
            let done = try await onReactor(reactor) { () -> Bool in
                for (name, milliseconds) in [("c", 60), ("a", 20), ("b", 40), ("cancelled", 30)] {
                    let id = reactor.schedule(after: .milliseconds(milliseconds)) { error in
                        fired.append(error == nil ? name : "\(name):\(error!.rawValue)")
                    }
                    if name == "cancelled" { reactor.cancel(id!) }
                }
                try await reactor.sleep(for: .milliseconds(100))
                return true
            }
            #expect(done)
            #expect(fired.names == ["cancelled:\(ECANCELED)", "a", "b", "c"])
        }
    }

    @Test func socketsEchoAcrossCores() async throws {
        try await withReactors(2) { group in
            let server = group.reactors[0]
            let client = group.reactors[1]
            let listener = try SocketAddress("127.0.0.1:0")!.listen()
            let port = SocketAddress.boundPort(of: listener)!
            // The server core accepts and echoes each connection until it closes.
            _ = try await onReactor(server) {
                server.acceptConnections(on: listener) { completion in
                    guard completion.result >= 0 else { return }
                    let connection = completion.result
                    Task(executorPreference: server) {
                        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
                        defer { buffer.deallocate() }
                        while let count = try? await server.receive(connection, into: buffer), count > 0 {
                            try? await server.sendAll(connection, UnsafeRawBufferPointer(rebasing: buffer[..<count]))
                        }
                        try? await server.close(connection)
                    }
                }
                return true
            }
            let echoed = try await onReactor(client) { () -> String in
                let socket = try await client.connect(to: SocketAddress(host: "127.0.0.1", port: port)!)
                var received: [UInt8] = []
                let message = OwnedBytes(Array("hello from another core".utf8))
                for _ in 0..<3 {
                    try await client.sendAll(socket, message.bytes)
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
                    defer { buffer.deallocate() }
                    var got = 0
                    while got < message.count {
                        let count = try await client.receive(
                            socket, into: UnsafeMutableRawBufferPointer(rebasing: buffer[got...]))
                        if count == 0 { break }
                        got += count
                    }
                    received += buffer[..<got]
                }
                try await client.close(socket)
                return String(decoding: received, as: UTF8.self)
            }
            #expect(echoed == String(repeating: "hello from another core", count: 3))
            Glibc.close(listener)
        }
    }

    @Test func receiveTimesOutOnASilentPeer() async throws {
        try await withReactors(1) { group in
            let reactor = group.reactors[0]
            let listener = try SocketAddress("127.0.0.1:0")!.listen()
            let port = SocketAddress.boundPort(of: listener)!
            let outcome = try await onReactor(reactor) { () -> Errno? in
                let socket = try await reactor.connect(to: SocketAddress(host: "127.0.0.1", port: port)!)
                let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
                defer { buffer.deallocate(); Glibc.close(socket) }
                do throws(Errno) {
                    _ = try await reactor.receive(socket, into: buffer, timeout: .milliseconds(50))
                    return nil
                } catch {
                    return error
                }
            }
            #expect(outcome == .canceled)
            Glibc.close(listener)
        }
    }
}

/// The names of timers in the order they fired.
private final class FiredTimers: Sendable {
    private let list = Mutex<[String]>([])
    func append(_ name: String) { list.withLock { $0.append(name) } }
    var names: [String] { list.withLock { $0 } }
}
