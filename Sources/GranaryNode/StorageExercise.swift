import Dispatch
import Glibc
import GranaryIO
import GranaryStorage

/// The storage engine driven from the command line: `granary storage stress` writes under
/// load and reports every acknowledged record, `granary storage check` reads a log back
/// and verifies it. Together they are the kill -9 crash test (Tests/compat and
/// tools/crash-test): whatever was acknowledged before the kill must be there after it.
public enum StorageExercise {
    /// A record payload that proves itself: the key, then value bytes derived from the key,
    /// so a checker can tell a garbled record without knowing what was written.
    public enum Payload {
        public static func make(key: String, valueBytes: Int) -> [UInt8] {
            let keyBytes = Array(key.utf8)
            precondition(keyBytes.count < 256, "keys in the exercise are short")
            let seed = keyBytes.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 }
            return [UInt8(keyBytes.count)] + keyBytes
                + (0..<valueBytes).map { UInt8(truncatingIfNeeded: seed &+ UInt32($0) &* 31) }
        }

        /// The key of a well-formed payload, or nil if the payload is garbled.
        public static func verify(_ payload: [UInt8]) -> String? {
            guard let length = payload.first, payload.count >= 1 + Int(length) else { return nil }
            let key = String(decoding: payload[1..<(1 + Int(length))], as: UTF8.self)
            return make(key: key, valueBytes: payload.count - 1 - Int(length)) == payload ? key : nil
        }
    }

    /// Which part of the engine an exercise drives.
    public enum Layer: String, Sendable {
        /// The write-ahead log alone: records by LSN.
        case log
        /// The replica store: the log in front of the B-tree, with checkpoints.
        case store
    }

    public struct StressOptions: Sendable {
        public var directory: String
        public var layer = Layer.store
        /// Dirty pages that trigger a checkpoint (store layer); small values checkpoint often.
        public var checkpointPages = 4096
        public var writers = 16
        public var valueBytes = 100
        public var seconds = 10.0
        public var wal = WALOptions()
        public init(directory: String) { self.directory = directory }
    }

    /// Appends records from `writers` concurrent tasks for `seconds` (or until killed),
    /// printing `ack <lsn> <key>` for each acknowledged one. Returns the count.
    public static func stress(_ options: StressOptions) throws -> Int {
        try ensureDirectory(options.directory)
        let outcome = try onOneReactor { reactor, outcome in
            let storage = ReactorStorage(path: options.directory, reactor: reactor)
            let deadline = ContinuousClock.now + .milliseconds(Int(options.seconds * 1000))
            let run = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            // One durable write of `key`; returns what to print, or nil on failure.
            let write: @Sendable (String) async -> String?
            let finish: @Sendable () async -> Void
            switch options.layer {
            case .log:
                let (log, _) = try await WriteAheadLog.open(storage: storage, options: options.wal, executor: reactor)
                write = { key in
                    guard let lsn = try? await log.append(Payload.make(key: key, valueBytes: options.valueBytes)) else {
                        return nil
                    }
                    return "ack \(lsn) \(key)\n"
                }
                finish = { await log.close() }
            case .store:
                var storeOptions = ReplicaStore<ReactorStorage>.Options()
                storeOptions.log = options.wal
                storeOptions.checkpointDirtyPages = options.checkpointPages
                let store = try await ReplicaStore.open(storage: storage, options: storeOptions, executor: reactor)
                write = { key in
                    do throws(StorageError) {
                        try await store.put(Array(key.utf8), Payload.make(key: key, valueBytes: options.valueBytes))
                    } catch {
                        return nil
                    }
                    return "ack \(key)\n"
                }
                finish = { await store.close() }
            }
            await withTaskGroup(of: Int.self) { writers in
                for writer in 0..<options.writers {
                    writers.addTask {
                        var count = 0
                        while ContinuousClock.now < deadline {
                            guard let line = await write("\(run)-\(writer)-\(count)") else { break }
                            printLine(line)
                            count += 1
                        }
                        return count
                    }
                }
                for await count in writers { outcome.count += count }
            }
            await finish()
        }
        return outcome.count
    }

    /// Reads the log back (`record <lsn> <key>` for each record), or opens the store, which
    /// recovers it, and reads every key (`record <key>`). Returns how many records there
    /// are and how many are garbled; throws on corruption.
    public static func check(
        directory: String, layer: Layer, wal: WALOptions = WALOptions(), printRecords: Bool
    ) throws -> (records: Int, garbled: Int) {
        // A log that was never started (a writer killed before it made its directory) is
        // an empty log.
        if access(directory, F_OK) != 0 && errno == ENOENT { return (0, 0) }
        let outcome = try onOneReactor { reactor, outcome in
            let storage = ReactorStorage(path: directory, reactor: reactor)
            switch layer {
            case .log:
                let records = try await WriteAheadLog.readAll(storage: storage, options: wal)
                for record in records {
                    if let key = Payload.verify(record.payload) {
                        if printRecords { printLine("record \(record.lsn) \(key)\n") }
                    } else {
                        printLine("garbled \(record.lsn)\n")
                        outcome.garbled += 1
                    }
                }
                outcome.count = records.count
            case .store:
                var storeOptions = ReplicaStore<ReactorStorage>.Options()
                storeOptions.log = wal
                // Read-only: a check recovers into memory and changes no file.
                let tree = try await ReplicaStore.recoverForReading(storage: storage, options: storeOptions)
                var start: [UInt8]? = nil
                while true {
                    let entries = try await tree.scan(from: start, limit: 1000)
                    // The replica's own records (table id 0: the applied slot) are not the exercise's.
                    for entry in entries where entry.key != start && !entry.key.starts(with: [0, 0, 0, 0]) {
                        let key = String(decoding: entry.key, as: UTF8.self)
                        if Payload.verify(entry.value) == key {
                            if printRecords { printLine("record \(key)\n") }
                        } else {
                            printLine("garbled \(key)\n")
                            outcome.garbled += 1
                        }
                        outcome.count += 1
                    }
                    if entries.count < 1000 { break }
                    start = entries.last!.key
                }
            }
        }
        return (outcome.count, outcome.garbled)
    }

    /// Runs `body` as a task on a fresh reactor (on the first CPU) and waits for it.
    private static func onOneReactor(
        _ body: @escaping @Sendable (Reactor, Outcome) async throws -> Void
    ) throws -> Outcome {
        let group = try ReactorGroup(cpus: [ReactorGroup.availableCPUs().first])
        defer { group.stop() }
        let reactor = group.reactors[0]
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        while !reactor.tryPost({
            Task(executorPreference: reactor) {
                defer { done.signal() }
                do {
                    try await body(reactor, outcome)
                } catch {
                    outcome.error = "\(error)"
                }
            }
        }) {}
        done.wait()
        if let error = outcome.error { throw ExerciseFailure(description: error) }
        return outcome
    }

    public struct ExerciseFailure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Results carried from the reactor thread back to the caller, who reads them after
    /// the semaphore: the semaphore orders the accesses.
    final class Outcome: @unchecked Sendable {
        var count = 0
        var garbled = 0
        var error: String?
    }

    private static func ensureDirectory(_ path: String) throws {
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw ExerciseFailure(description: "cannot create \(path): \(Errno(errno))")
        }
    }

    /// One line to standard output in one write(2), so a kill never leaves half a line that
    /// looks whole (lines are shorter than PIPE_BUF).
    private static func printLine(_ line: String) {
        var line = line
        line.withUTF8 { bytes in _ = Glibc.write(1, bytes.baseAddress, bytes.count) }
    }
}
