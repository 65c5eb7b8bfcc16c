import Foundation
import Testing
@testable import GranaryLoad

@Suite struct RecordsAndLogTests {
    let layout = RecordLayout(table: "t", ranged: false, fieldCount: 3, valueBytes: 64)

    @Test func valuesCarryTheirSequenceAndAreCheckedByteForByte() {
        let value = layout.value(record: 17, field: 2, sequence: 123_456)
        #expect(value.utf8.count == 64)
        #expect(value.hasPrefix("123456:"))
        #expect(layout.sequence(inValue: value, record: 17, field: 2) == 123_456)
        // The same sequence under another record or field is not what was written there.
        #expect(layout.sequence(inValue: value, record: 18, field: 2) == nil)
        #expect(layout.sequence(inValue: value, record: 17, field: 1) == nil)
        var flipped = Array(value.utf8)
        flipped[40] = flipped[40] == UInt8(ascii: "a") ? UInt8(ascii: "b") : UInt8(ascii: "a")
        #expect(layout.sequence(inValue: String(decoding: flipped, as: UTF8.self), record: 17, field: 2) == nil)
        #expect(layout.sequence(inValue: "garbage", record: 17, field: 2) == nil)
    }

    @Test func keysFollowTheLayout() {
        let ranged = RecordLayout(table: "t", ranged: true, fieldCount: 1, valueBytes: 24)
        #expect(layout.keyJSON(5) == #""pk":{"S":"user\#(fnvHash64(5))"}"#)
        #expect(ranged.partitionKey(5) == ranged.partitionKey(Workload.groupSize - 1))
        #expect(ranged.partitionKey(5) != ranged.partitionKey(Workload.groupSize))
        #expect(ranged.keyJSON(5).hasSuffix(#""sk":{"N":"5"}"#))
    }

    @Test func theLogKeepsTheLastAcknowledgedSequencePerField() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("verify-\(UUID()).log").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let log = try VerifyLog(path: path, layout: layout)
        log.acknowledged(record: 1, field: -1, sequence: 10)
        log.acknowledged(record: 1, field: 2, sequence: 12)
        log.acknowledged(record: 2, field: 0, sequence: 11)
        log.flush()
        // A torn last line (the writer died mid-line) is skipped.
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data("3 1".utf8))
        try handle.close()
        let (header, expected) = try VerifyLog.read(path: path)
        #expect(header.layout.fieldCount == 3 && header.table == "t")
        #expect(expected[1] == [10, 10, 12])
        #expect(expected[2] == [11, -1, -1])
        #expect(expected[3] == nil)
        // Reopened, it starts past what it holds; another layout is refused.
        #expect(try VerifyLog(path: path, layout: layout).largestSequence == 12)
        #expect(throws: VerifyLog.Failure.self) {
            _ = try VerifyLog(
                path: path, layout: RecordLayout(table: "u", ranged: false, fieldCount: 3, valueBytes: 64))
        }
    }
}
