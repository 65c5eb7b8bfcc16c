import Foundation
import GranaryIO
@testable import GranaryStorage
import Testing

/// The real storage's directory operations, each an io_uring request on the core's ring.
@Suite struct ReactorStorageTests {
    @Test func createsRenamesRemovesAndSynchronizesThroughTheRing() async throws {
        let path = FileManager.default.currentDirectoryPath + "/.build/test-data/\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let (afterRename, afterRemove, missingRename, missingRemove) = try await onReactor { reactor in
            let storage = ReactorStorage(path: path, reactor: reactor)
            for name in ["a", "b"] { try await storage.open(name, create: true).close() }
            try await storage.rename("a", to: "c")
            try await storage.synchronizeDirectory()
            let afterRename = try storage.list()
            try await storage.remove("b")
            try await storage.synchronizeDirectory()
            let afterRemove = try storage.list()
            var missingRename: StorageError?
            do { try await storage.rename("nothing", to: "d") } catch let error as StorageError {
                missingRename = error
            }
            var missingRemove: StorageError?
            do { try await storage.remove("nothing") } catch let error as StorageError { missingRemove = error }
            return (afterRename, afterRemove, missingRename, missingRemove)
        }
        #expect(afterRename == ["b", "c"])
        #expect(afterRemove == ["c"])
        #expect(missingRename == .system(operation: "rename", file: "nothing", errno: ENOENT))
        #expect(missingRemove == .system(operation: "unlink", file: "nothing", errno: ENOENT))
    }
}
