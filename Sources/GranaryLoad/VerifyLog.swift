import GranaryIO
import Foundation

/// The log of acknowledged writes behind `--verify`: one line per write the server
/// acknowledged, "RECORD FIELD SEQUENCE" (FIELD -1: every field, a whole-item put). A
/// later `check` reads every logged record back and demands, for each field, a value
/// whose sequence number is at least the last acknowledged one (a later write, acknowledged
/// or not, may have replaced it: sequence numbers only grow, and the generator never has
/// two writes to one record in flight) and whose bytes are exactly what that write sent.
public final class VerifyLog: Sendable {
    public struct Header: Equatable, Sendable {
        public var table: String
        public var ranged: Bool
        public var fieldCount: Int
        public var valueBytes: Int

        var line: String {
            "# granary-load verify table=\(table) ranged=\(ranged ? 1 : 0) fields=\(fieldCount) value=\(valueBytes)\n"
        }

        init(_ layout: RecordLayout) {
            table = layout.table
            ranged = layout.ranged
            fieldCount = layout.fieldCount
            valueBytes = layout.valueBytes
        }

        init?(line: Substring) {
            var values: [String: String] = [:]
            for part in line.split(separator: " ").dropFirst(3) {
                let pair = part.split(separator: "=", maxSplits: 1)
                if pair.count == 2 { values[String(pair[0])] = String(pair[1]) }
            }
            guard line.hasPrefix("# granary-load verify "), let table = values["table"],
                let fields = Int(values["fields"] ?? ""),
                let value = Int(values["value"] ?? ""), let ranged = values["ranged"]
            else { return nil }
            self.table = table
            self.ranged = ranged == "1"
            fieldCount = fields
            valueBytes = value
        }

        public var layout: RecordLayout {
            RecordLayout(table: table, ranged: ranged, fieldCount: fieldCount, valueBytes: valueBytes)
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private let handle: FileHandle
    /// The largest sequence number the log held when opened: new writes go past it.
    public let largestSequence: Int
    private let pending = Locked<[UInt8]>([])
    /// Writes in flight, by record: the generator keeps one write per record at a time.
    private let claimed = Locked<Set<Int>>([])

    /// Opens `path` for appending, writing the header to a new file or checking an
    /// existing file's header against `layout`.
    public init(path: String, layout: RecordLayout) throws(Failure) {
        let header = Header(layout)
        if FileManager.default.fileExists(atPath: path) {
            guard let existing = try? Self.readHeader(path: path), existing == header else {
                throw Failure(
                    description: "\(path) is a verify log of another table layout (or not one); use a new path")
            }
        } else if !FileManager.default.createFile(
            atPath: path, contents: Array(header.line.utf8).withUnsafeBytes { Data($0) })
        {
            throw Failure(description: "cannot create \(path)")
        }
        guard let handle = FileHandle(forWritingAtPath: path) else { throw Failure(description: "cannot open \(path)") }
        handle.seekToEndOfFile()
        self.handle = handle
        largestSequence = (try? Self.read(path: path))?.1.values.lazy.compactMap { $0.max() }.max() ?? 0
    }

    static func readHeader(path: String) throws(Failure) -> Header {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Failure(description: "cannot read \(path)")
        }
        let text = String(decoding: data.prefix(4096), as: UTF8.self)
        guard let first = text.split(separator: "\n").first, let header = Header(line: first) else {
            throw Failure(description: "\(path) does not start with a granary-load verify header")
        }
        return header
    }

    /// Claims `record` for a write; false if a write to it is in flight.
    func claim(_ record: Int) -> Bool { claimed.withLock { $0.insert(record).inserted } }
    func release(_ record: Int) { _ = claimed.withLock { $0.remove(record) } }

    /// Logs an acknowledged write.
    func acknowledged(record: Int, field: Int, sequence: Int) {
        let flush: [UInt8]? = pending.withLock { buffer in
            buffer += "\(record) \(field) \(sequence)\n".utf8
            guard buffer.count >= 1 << 20 else { return nil }
            defer { buffer.removeAll(keepingCapacity: true) }
            return buffer
        }
        if let flush { handle.write(Data(flush)) }
    }

    /// Writes what is buffered.
    public func flush() {
        let rest = pending.withLock { buffer in
            defer { buffer.removeAll() }
            return buffer
        }
        if !rest.isEmpty { handle.write(Data(rest)) }
        try? handle.synchronize()
    }

    /// Reads a log: its header and, per record, the last acknowledged sequence number of
    /// each field.
    public static func read(path: String) throws(Failure) -> (Header, [Int: [Int]]) {
        let header = try readHeader(path: path)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Failure(description: "cannot read \(path)")
        }
        var expected: [Int: [Int]] = [:]
        for (number, line) in data.split(separator: UInt8(ascii: "\n")).enumerated() where number > 0 {
            let parts = line.split(separator: UInt8(ascii: " "))
            // A torn last line (the generator was killed mid-write) is skipped.
            guard parts.count == 3, let record = Int(String(decoding: parts[0], as: UTF8.self)),
                let field = Int(String(decoding: parts[1], as: UTF8.self)),
                let sequence = Int(String(decoding: parts[2], as: UTF8.self)),
                field >= -1, field < header.fieldCount
            else { continue }
            var fields = expected[record] ?? Array(repeating: -1, count: header.fieldCount)
            if field == -1 {
                for index in fields.indices { fields[index] = max(fields[index], sequence) }
            } else {
                fields[field] = max(fields[field], sequence)
            }
            expected[record] = fields
        }
        return (header, expected)
    }
}
