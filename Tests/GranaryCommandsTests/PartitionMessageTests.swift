import Foundation
import GranaryCommands
import GranaryModel
import Testing

/// Every request and reply a partition exchanges survives encoding unchanged: the messages
/// a router sends on this node are the ones it will send to another node's leader.
@Suite struct PartitionMessageTests {
    static let key = KeyEncoding.tablePrefix(3) + [1, 2]
    static let transaction = TransactionID("attempt-1")
    static let command = WriteCommand(
        table: 3, key: key, condition: .exists(DocumentPath([.attribute("a")])), action: .put(["a": .s("x")]))

    static let requests: [PartitionRequest] = [
        .get(key: key),
        .write(command),
        .readRange(
            RangeRead(KeyRange(lower: key, upper: key + [0xFF]), after: key, reverse: true, limit: 5, byteLimit: 9)),
        .prepare(transaction, [command, WriteCommand(table: 3, key: key + [1], action: .check)]),
        .lock(transaction, keys: [key, key + [1]]),
        .apply([
            TransactionWrite(table: 3, key: key, item: ["a": .n(Number(1))]),
            TransactionWrite(table: 3, key: key, item: nil),
        ]),
        .release(transaction),
        .statistics(table: 3),
        .purge(table: 3),
        .systemGet(key: [0, 0, 0, 0, 7]),
        .systemPut(key: [0, 0, 0, 0, 7], value: [1, 2, 3]),
        .systemDelete(key: [0, 0, 0, 0, 7]),
        .systemScan(prefix: [0, 0, 0, 0], after: [0, 0, 0, 0, 1], limit: 256),
    ]

    static let replies: [PartitionReply] = {
        var page = RangePage()
        page.storedItems = [[1, 2], [3]]
        page.bytes = 3
        page.lastKey = key
        page.more = true
        return [
            .done,
            .item(nil),
            .item([1, 2, 3]),
            .written(WriteOutcome(old: ["a": .s("x")], new: nil)),
            .page(page),
            .prepared(
                .prepared([
                    .ready(WriteOutcome(old: nil, new: ["a": .bool(true)])),
                    .refused(.conditionalCheckFailed(item: nil)),
                ])),
            .prepared(.conflict(1)),
            .locked(conflict: nil),
            .locked(conflict: 0),
            .statistics(TableStatistics(items: 4, bytes: 400)),
            .entries([SystemEntry(key: [0, 0, 0, 0, 1], value: [9])]),
        ]
    }()

    /// The canonical text of a value: equal values, equal text (sorted keys).
    static func text<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    @Test func everyRequestSurvivesEncoding() throws {
        for request in Self.requests {
            let decoded = try JSONDecoder().decode(PartitionRequest.self, from: JSONEncoder().encode(request))
            #expect(try Self.text(decoded) == Self.text(request))
            #expect(decoded.startsWork == request.startsWork)
        }
    }

    @Test func everyReplySurvivesEncoding() throws {
        for reply in Self.replies {
            let decoded = try JSONDecoder().decode(PartitionReply.self, from: JSONEncoder().encode(reply))
            #expect(try Self.text(decoded) == Self.text(reply))
        }
    }

    @Test func onlyApplyAndReleaseFinishAdmittedWork() {
        let finishing = Self.requests.filter { !$0.startsWork }
        #expect(finishing.count == 2)
        #expect(
            finishing.allSatisfy {
                switch $0 {
                case .apply, .release: true
                default: false
                }
            })
    }
}
