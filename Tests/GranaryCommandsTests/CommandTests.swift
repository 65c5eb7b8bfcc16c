import Foundation
import GranaryModel
@testable import GranaryCommands
import Testing

/// Partition commands are values that survive encoding (they will cross to other nodes),
/// and decoding refuses what would make evaluation trap.
@Suite struct CommandTests {
    func parsed(update: String, condition: String, values: [String: AttributeValue]) throws -> WriteCommand {
        let context = ExpressionContext(names: [:], values: values)
        let actions = try ExpressionParser.update(update, context: context)
        let check = try ExpressionParser.condition(condition, context: context)
        return WriteCommand(
            table: 7, key: [1, 2, 3], condition: check, action: .update(actions, keyItem: ["pk": .s("k")]),
            returnsOldOnFailure: true)
    }

    @Test func aWriteCommandSurvivesEncodingAndEvaluatesTheSame() throws {
        let values: [String: AttributeValue] = [
            ":one": .n(try Number(parsing: "1.50")), ":low": .n(Number(0)), ":tags": .ss(["a", "b"]),
            ":m": .m(["deep": .l([.null, .bool(true), .b([0, 255])])]),
        ]
        let command = try parsed(
            update: "SET n = if_not_exists(n, :low) + :one, m.x = :m, l[3] = :one ADD tags :tags REMOVE gone",
            condition: "attribute_not_exists(n) OR (n BETWEEN :low AND :one AND NOT contains(tags, :low))",
            values: values)
        let decoded = try JSONDecoder().decode(WriteCommand.self, from: JSONEncoder().encode(command))
        #expect(decoded.table == 7 && decoded.key == [1, 2, 3] && decoded.readsOld && decoded.returnsOldOnFailure)
        let stored: Item = ["pk": .s("k"), "m": .m([:]), "l": .l([.s("x")]), "gone": .bool(false)]
        let expected = try command.newItem(replacing: stored)
        #expect(try decoded.newItem(replacing: stored) == expected)
        #expect(expected?["n"] == .n(try Number(parsing: "1.5")) && expected?["gone"] == nil)
        // A failed condition carries the stored item back, after the round trip too.
        let failing: Item = ["pk": .s("k"), "n": .n(Number(5))]
        #expect(throws: DynamoError.conditionalCheckFailed(item: failing)) { try decoded.newItem(replacing: failing) }
    }

    @Test func decodingRefusesPathsAndNumbersThatCouldNotBeParsed() throws {
        let command = WriteCommand(
            table: 1, key: [9], condition: .exists(DocumentPath([.attribute("a"), .index(2)])),
            action: .put(["n": .n(Number(12))]))
        let text = String(decoding: try JSONEncoder().encode(command), as: UTF8.self)
        #expect(text.contains("[\"a\",2]") && text.contains("\"12\""))
        for (good, bad) in [
            ("[\"a\",2]", "[\"a\",-2]"), ("[\"a\",2]", "[2,\"a\"]"), ("[\"a\",2]", "[]"), ("\"12\"", "\"1e999\""),
        ] {
            let hostile = Data(text.replacingOccurrences(of: good, with: bad).utf8)
            #expect(throws: DecodingError.self) { try JSONDecoder().decode(WriteCommand.self, from: hostile) }
        }
    }
}
