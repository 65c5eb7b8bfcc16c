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
        .prepare(transaction, [command, WriteCommand(table: 3, key: key + [1], action: .check)], coordinator: 2),
        .lock(transaction, keys: [key, key + [1]]),
        .apply(
            transaction,
            [
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
        .systemCreate(entries: [SystemEntry(key: [0, 0, 0, 0, 7], value: [1])], deadline: 1_800_000_000.5),
        .systemCreate(entries: [], deadline: nil),
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
            .released(held: true),
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

/// A transport whose partition answers whatever it is told to: a peer gone wrong.
struct ScriptedTransport: PartitionTransport {
    let reply: PartitionReply
    var map: PartitionMap { PartitionMap(count: 1) }
    func send(_ request: PartitionRequest, to partition: Int) async throws(DynamoError) -> PartitionReply { reply }
    func localCore(of partition: Int) -> Int? { nil }
}

@Suite struct PartitionReplyCheckTests {
    static let commands = [PartitionMessageTests.command, PartitionMessageTests.command]

    /// Replies of the wrong kind, or whose indexes and counts do not match the request,
    /// are errors for the caller, not indexes it would trap on.
    @Test func aReplyThatDoesNotFitItsRequestIsAnError() async {
        let id = PartitionMessageTests.transaction
        let wrong: [(PartitionReply, @Sendable (ScriptedTransport) async throws -> Void)] = [
            (.prepared(.conflict(2)), { _ = try await $0.prepare(id, Self.commands, coordinator: 0, at: 0) }),
            (.prepared(.conflict(-1)), { _ = try await $0.prepare(id, Self.commands, coordinator: 0, at: 0) }),
            (.prepared(.prepared([])), { _ = try await $0.prepare(id, Self.commands, coordinator: 0, at: 0) }),
            (.locked(conflict: 1), { _ = try await $0.lock(id, keys: [[1]], at: 0) }),
            (.done, { _ = try await $0.get([1], at: 0) }),
            (.item(nil), { _ = try await $0.execute(PartitionMessageTests.command, at: 0) }),
            (.done, { _ = try await $0.release(id, at: 0) }),
            (
                .entries([SystemEntry(key: [0, 0, 0, 0, 8], value: [])]),
                { _ = try await $0.systemCreate([SystemEntry(key: [0, 0, 0, 0, 7], value: [])], at: 0) }
            ),
        ]
        for (reply, call) in wrong {
            var failure: DynamoError?
            do { try await call(ScriptedTransport(reply: reply)) } catch let error as DynamoError {
                failure = error
            } catch {}
            #expect(failure?.type == "InternalServerError", "\(reply)")
        }
        // And the fitting ones pass.
        let conflict = try? await ScriptedTransport(reply: .prepared(.conflict(1))).prepare(
            id, Self.commands, coordinator: 0, at: 0)
        #expect(conflict.map { if case .conflict(1) = $0 { true } else { false } } == true)
    }
}
