import Foundation
import GranaryIO
import Glibc

/// Runs `body` with a group of `count` unpinned reactors, and stops them afterwards.
func withReactors<T>(_ count: Int, _ body: (ReactorGroup) async throws -> T) async throws -> T {
    let group = try ReactorGroup(cpus: Array(repeating: nil, count: count))
    defer { group.stop() }
    return try await body(group)
}

/// Runs `body` as a task on `reactor`'s thread and returns its result.
func onReactor<T: Sendable>(
    _ reactor: Reactor, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await Task(executorPreference: reactor) { try await body() }.value
}

/// A fresh directory on a disk filesystem (O_DIRECT needs one: /tmp may be tmpfs).
func makeDiskDirectory() throws -> String {
    let base = FileManager.default.currentDirectoryPath + "/.build/test-data"
    let path = base + "/\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Bytes at a stable address for as long as the object lives, to lend to the kernel
/// across suspension points (an array's `withUnsafeBytes` cannot span an `await`).
final class OwnedBytes: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    let count: Int
    init(_ array: [UInt8]) {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(array.count, 1), alignment: 16)
        storage.copyBytes(from: array)
        bytes = UnsafeRawBufferPointer(rebasing: storage[..<array.count])
        count = array.count
    }
    deinit { bytes.baseAddress.map { UnsafeMutableRawPointer(mutating: $0).deallocate() } }
}
