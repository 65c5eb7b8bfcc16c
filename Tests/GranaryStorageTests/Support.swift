import GranaryIO
@testable import GranaryStorage

/// Runs `body` as a task on a fresh reactor's thread, and stops the reactor afterwards.
func onReactor<T: Sendable>(_ body: @escaping @Sendable (Reactor) async throws -> T) async throws -> T {
    let group = try ReactorGroup(cpus: [nil])
    defer { group.stop() }
    let reactor = group.reactors[0]
    return try await Task(executorPreference: reactor) { try await body(reactor) }.value
}

/// Small segments, so that tests roll and recycle them often.
let smallLog: WALOptions = {
    var options = WALOptions()
    options.segmentBytes = 64 * 1024
    options.groupBytesMax = 16 * 1024
    options.recordPayloadBytesMax = 8 * 1024
    return options
}()

/// A payload that names itself: `id` in its first 8 bytes, then bytes derived from it.
func payload(id: UInt64, size: Int) -> [UInt8] {
    var bytes = withUnsafeBytes(of: id.littleEndian) { Array($0) }
    bytes += (0..<max(0, size - 8)).map { UInt8(truncatingIfNeeded: id &* 31 &+ UInt64($0)) }
    return Array(bytes.prefix(max(size, 8)))
}

/// What the writers were told was durable, and everything they tried to write. Used on
/// one reactor thread only.
final class Ledger: @unchecked Sendable {
    var acknowledged: [UInt64: [UInt8]] = [:]  // LSN to payload
    var attempted: Set<[UInt8]> = []
}
