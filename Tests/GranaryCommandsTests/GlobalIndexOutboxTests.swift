import GranaryCommands
import GranaryModel
import Testing

/// An item's outbox record, however many writes it stands for, ships the index to the
/// item's state: random sequences of changes folded into one record (shipped at random
/// points, as the shipper would) leave a model index exactly as the item's last state.
@Suite struct GlobalIndexOutboxTests {
    static let maintenance = IndexMaintenance(
        partitionKey: "id", sortKey: nil,
        indexes: [
            SecondaryIndex(
                name: "by-team", id: 5, global: true, partitionKey: KeyAttribute(name: "team", type: "S"),
                sortKey: KeyAttribute(name: "rank", type: "N"), projection: IndexProjection(kind: .all)),
            SecondaryIndex(
                name: "by-email", id: 6, global: true, partitionKey: KeyAttribute(name: "email", type: "S"),
                sortKey: nil, projection: IndexProjection(kind: .keysOnly)),
        ])

    static func randomItem(_ random: inout SystemRandomNumberGenerator) -> Item? {
        if Int.random(in: 0..<5, using: &random) == 0 { return nil }
        var item: Item = ["id": .s("u1"), "note": .s("n\(Int.random(in: 0..<3, using: &random))")]
        if Bool.random(using: &random) { item["team"] = .s(["red", "blue"].randomElement(using: &random)!) }
        if Bool.random(using: &random) { item["rank"] = .n(Number(Int.random(in: 0..<3, using: &random))) }
        if Bool.random(using: &random) { item["email"] = .s(["a", "b"].randomElement(using: &random)!) }
        return item
    }

    @Test func foldedRecordsShipTheItemsLastState() throws {
        var random = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var index: [[UInt8]: Item] = [:]  // the global indexes' entries, as shipped (decoded)
            var item: Item? = nil
            var record: GlobalIndexOutbox?
            for _ in 0..<Int.random(in: 1..<8, using: &random) {
                let next = Self.randomItem(&random)
                if let change = GlobalIndexOutbox.changes(Self.maintenance, old: item, new: next) {
                    record = change.merged(after: record)
                }
                item = next
                if let pending = record, Bool.random(using: &random) {  // a pass ships it
                    let (deletes, puts) = pending.writes(for: item)
                    for key in deletes { index[key] = nil }
                    for put in puts { index[put.key] = try ItemCodec.decode(put.value) }
                    if Bool.random(using: &random) { record = nil }  // dropped, or changed meanwhile
                }
            }
            if let pending = record {
                let (deletes, puts) = pending.writes(for: item)
                for key in deletes { index[key] = nil }
                for put in puts { index[put.key] = try ItemCodec.decode(put.value) }
            }
            var expected: [[UInt8]: Item] = [:]
            for global in Self.maintenance.indexes {
                if let item, let entry = Self.maintenance.entry(of: item, in: global) {
                    expected[entry.key] = entry.item
                }
            }
            #expect(index == expected)
            if index != expected { return }
        }
    }

    @Test func aRecordSurvivesItsStoredForm() throws {
        let change = try #require(
            GlobalIndexOutbox.changes(
                Self.maintenance, old: ["id": .s("u"), "email": .s("a")], new: ["id": .s("u"), "email": .s("b")]))
        #expect(change.deletes.count == 1)
        #expect(GlobalIndexOutbox(encoded: change.encoded) == change)
        #expect(GlobalIndexOutbox(encoded: [1, 2, 3]) == nil)
        #expect(GlobalIndexOutbox.item(of: GlobalIndexOutbox.key(item: [0, 0, 0, 9, 1])) == [0, 0, 0, 9, 1])
    }
}
