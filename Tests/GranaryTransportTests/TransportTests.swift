import Foundation
import GranaryIO
import Logging
import Testing

@testable import GranaryTransport

@Suite struct FrameTests {
    @Test func aFrameRoundTripsAndWaitsForItsLastByte() throws {
        var bytes: [UInt8] = []
        Frame.append(kind: 7, payload: Array("hello".utf8), to: &bytes)
        Frame.append(kind: 8, payload: [], to: &bytes)
        for cut in 0..<(Frame.headerBytes + 5) {
            #expect(try Frame.parse(Array(bytes[..<cut]), from: 0) == nil)
        }
        let first = try #require(try Frame.parse(bytes, from: 0))
        #expect(first.kind == 7 && first.payload == Array("hello".utf8))
        let second = try #require(try Frame.parse(bytes, from: first.end))
        #expect(second.kind == 8 && second.payload.isEmpty && second.end == bytes.count)
    }

    @Test func damageTooLongAndOtherVersionsAreRefused() throws {
        var bytes: [UInt8] = []
        Frame.append(kind: 1, payload: [1, 2, 3, 4], to: &bytes)
        var flipped = bytes
        flipped[Frame.headerBytes + 2] ^= 0x10
        #expect(throws: Frame.ParseError.checksum) { try Frame.parse(flipped, from: 0) }
        var version = bytes
        version[4] = 9
        #expect(throws: Frame.ParseError.version(9)) { try Frame.parse(version, from: 0) }
        #expect(throws: Frame.ParseError.tooLong(4)) { try Frame.parse(bytes, from: 0, payloadBytesMax: 3) }
    }

    @Test func helloParsesOnlyWhenWellFormed() {
        let hello = PeerHandshake.Hello(cluster: "c1", from: 2, to: 3, nonce: PeerHandshake.nonce())
        #expect(PeerHandshake.Hello(payload: hello.payload) == hello)
        for cut in 0..<hello.payload.count {
            #expect(PeerHandshake.Hello(payload: Array(hello.payload[..<cut])) == nil)
        }
        #expect(PeerHandshake.Hello(payload: hello.payload + [0]) == nil)
    }
}

/// Frames received by a test network, from any core.
final class Inbox: @unchecked Sendable {
    private let lock = NSLock()
    private var frames: [(UInt32, UInt8, [UInt8])] = []
    func add(_ frame: (UInt32, UInt8, [UInt8])) { lock.withLock { frames.append(frame) } }
    var all: [(UInt32, UInt8, [UInt8])] { lock.withLock { frames } }
}

@Suite struct FragmentTests {
    static func fragments(of message: [UInt8], id: UInt64) -> [[UInt8]] {
        stride(from: 0, to: message.count, by: Fragments.bytesMax).map {
            Fragments.fragment(of: message, id: id, at: $0)
        }
    }

    @Test func aMessageComesTogetherInOrderAndNothingElseDoes() {
        let message = (0..<(2 * Fragments.bytesMax + 123)).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let pieces = Self.fragments(of: message, id: 9)
        #expect(pieces.count == 3)
        var reassembly = Reassembly(bytesMax: 8 << 20)
        #expect(reassembly.take(pieces[0][...]) == nil)
        #expect(reassembly.reserved == message.count)
        #expect(reassembly.take(pieces[1][...]) == nil)
        #expect(reassembly.take(pieces[2][...]) == message)
        #expect(reassembly.reserved == 0)
        // Out of order, repeated, or another message's middle: what was gathered is dropped.
        #expect(reassembly.take(pieces[0][...]) == nil)
        #expect(reassembly.take(pieces[2][...]) == nil)
        #expect(reassembly.take(pieces[1][...]) == nil)
        #expect(reassembly.reserved == 0)
        // A new message's first fragment abandons an unfinished one.
        let other = Self.fragments(of: Array(message.reversed()), id: 10)
        #expect(reassembly.take(pieces[0][...]) == nil)
        #expect(other.reduce(nil) { _, piece in reassembly.take(piece[...]) } == Array(message.reversed()))
        // Too long for the bound, refused by `admit`, or damaged: never gathered.
        var small = Reassembly(bytesMax: Fragments.bytesMax)
        #expect(small.take(pieces[0][...]) == nil && small.reserved == 0)
        #expect(reassembly.take(pieces[0][...], admit: { _ in false }) == nil && reassembly.reserved == 0)
        #expect(reassembly.take(pieces[0].prefix(10)) == nil && reassembly.reserved == 0)
        #expect(reassembly.take(pieces[0][...]) == nil)
        var lying = pieces[1]  // a total its bytes run past
        withUnsafeBytes(of: UInt64(Fragments.bytesMax + 10).littleEndian) { lying.replaceSubrange(8..<16, with: $0) }
        #expect(reassembly.take(lying[...]) == nil && reassembly.reserved == 0)
    }
}

@Suite(.serialized) struct PeerNetworkTests {
    /// Two nodes on two reactors; `secrets` are each one's cluster secret.
    func exchange(secrets: ([UInt8], [UInt8]), frames: Int) async throws -> (Inbox, Inbox, Bool) {
        let group = try ReactorGroup(cpus: [nil, nil])
        defer { group.stop() }
        let listeners = try [SocketAddress("127.0.0.1:0")!.listen(), SocketAddress("127.0.0.1:0")!.listen()]
        let addresses = listeners.map { SocketAddress(host: "127.0.0.1", port: SocketAddress.boundPort(of: $0)!)! }
        let logger = Logger(label: "test")
        let networks = [
            PeerNetwork(
                reactor: group.reactors[0], identity: PeerIdentity(cluster: "c", node: 1, secret: secrets.0),
                peers: [2: addresses[1]], logger: logger),
            PeerNetwork(
                reactor: group.reactors[1], identity: PeerIdentity(cluster: "c", node: 2, secret: secrets.1),
                peers: [1: addresses[0]], logger: logger),
        ]
        let inboxes = [Inbox(), Inbox()]
        for index in 0..<2 {
            let (network, inbox, listener) = (networks[index], inboxes[index], listeners[index])
            try await Task(executorPreference: network.reactor) {
                network.start(listener: listener) { inbox.add(($0, $1, $2)) }
            }.value
        }
        var connected = false
        for _ in 0..<100 where !connected {
            try await Task.sleep(for: .milliseconds(20))
            connected = networks[0].isConnected(2) && networks[1].isConnected(1)
        }
        for index in 0..<2 {
            let network = networks[index]
            let peer: UInt32 = index == 0 ? 2 : 1
            try await Task(executorPreference: network.reactor) {
                for n in 0..<frames {
                    network.send(kind: 5, payload: withUnsafeBytes(of: UInt32(n)) { Array($0) }, to: peer)
                }
            }.value
        }
        for _ in 0..<100 where inboxes.contains(where: { $0.all.count < frames }) {
            try await Task.sleep(for: .milliseconds(20))
        }
        for network in networks { network.stop() }
        for listener in listeners { close(listener) }
        return (inboxes[0], inboxes[1], connected)
    }

    @Test func membersWithTheSecretExchangeFramesInOrder() async throws {
        let secret = Array("the same secret, 32 bytes long!!".utf8)
        let (atOne, atTwo, connected) = try await exchange(secrets: (secret, secret), frames: 500)
        #expect(connected)
        for (inbox, from) in [(atOne, UInt32(2)), (atTwo, UInt32(1))] {
            let frames = inbox.all
            #expect(frames.count == 500)
            #expect(frames.allSatisfy { $0.0 == from && $0.1 == 5 })
            #expect(frames.map { $0.2.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) } } == Array(0..<500))
        }
    }

    @Test func aPeerWithAnotherSecretNeverConnects() async throws {
        let (atOne, atTwo, connected) = try await exchange(
            secrets: (Array("one secret of the cluster".utf8), Array("another secret entirely".utf8)), frames: 10)
        #expect(!connected)
        #expect(atOne.all.isEmpty && atTwo.all.isEmpty)
    }
}
