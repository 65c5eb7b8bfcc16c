import Testing
@testable import GranaryModel

/// A KeyCondition's B-tree range holds exactly the keys whose sort key satisfies it.
@Suite struct KeyConditionTests {
    let table = TableInfo(
        id: 7, name: "t", partitionKey: KeyAttribute(name: "pk", type: "S"),
        sortKey: KeyAttribute(name: "sk", type: "N"),
        attributeDefinitions: [], billingMode: "PAY_PER_REQUEST", readCapacity: 0, writeCapacity: 0, createdAt: 0,
        uuid: "u")
    let numbers = [
        "-1E+10", "-10.5", "-10", "-1", "-0.5", "0", "0.001", "0.5", "1", "1.5", "2", "10", "10.5", "100", "1E+20",
    ]

    func parse(_ text: String, values: [String: AttributeValue]) throws -> KeyCondition {
        let context = ExpressionContext(names: [:], values: values)
        let condition = try KeyCondition(
            ExpressionParser.condition(text, kind: "KeyConditionExpression", context: context), table: table)
        try context.checkAllUsed()
        return condition
    }

    func number(_ text: String) throws -> AttributeValue { .n(try Number(parsing: text)) }

    @Test(arguments: [
        "sk = :a", "sk < :a", "sk <= :a", "sk > :a", "sk >= :a", ":a < sk", ":a >= sk", "sk BETWEEN :a AND :b",
    ])
    func rangeMatchesCondition(_ sortCondition: String) throws {
        for bound in ["-10", "0", "0.5", "1", "10.5", "7"] {
            var values = [":p": AttributeValue.s("user"), ":a": try number(bound)]
            if sortCondition.contains(":b") { values[":b"] = try number("10.5") }
            let condition = try parse("pk = :p AND " + sortCondition, values: values)
            let (lower, upper) = condition.keyRange(table: table.id)
            for text in numbers + ["3", "7", "7.0001"] {
                let key = table.storageKey(partition: .s("user"), sort: try number(text))
                let inRange = !key.lexicographicallyPrecedes(lower) && key.lexicographicallyPrecedes(upper)
                #expect(
                    inRange == condition.matchesSort(try number(text)), "\(sortCondition) with \(bound), key \(text)")
            }
            // Another partition key's items are never in range.
            let other = table.storageKey(partition: .s("user2"), sort: try number(bound))
            #expect(!(!other.lexicographicallyPrecedes(lower) && other.lexicographicallyPrecedes(upper)))
        }
    }

    @Test func beginsWithOnStringSortKeys() throws {
        var stringTable = table
        stringTable.sortKey = KeyAttribute(name: "sk", type: "S")
        let context = ExpressionContext(names: [:], values: [":p": .s("u"), ":s": .s("ab")])
        let condition = try KeyCondition(
            ExpressionParser.condition(
                "pk = :p AND begins_with(sk, :s)", kind: "KeyConditionExpression", context: context),
            table: stringTable)
        let (lower, upper) = condition.keyRange(table: stringTable.id)
        for (text, expected) in [
            ("a", false), ("ab", true), ("abz", true), ("ab\u{FFFF}", true), ("ac", false), ("b", false),
        ] {
            let key = stringTable.storageKey(partition: .s("u"), sort: .s(text))
            #expect(
                (!key.lexicographicallyPrecedes(lower) && key.lexicographicallyPrecedes(upper)) == expected, "\(text)")
        }
    }

    @Test(arguments: [
        ("pk = :p OR sk = :a", "Invalid KeyConditionExpression: Invalid operator used in KeyConditionExpression: OR"),
        ("sk = :a", "Query condition missed key schema element: pk"),
        ("pk < :p", "Query key condition not supported"),
        ("pk = :p AND sk = :a AND sk = :a", "Query key condition not supported"),
        ("pk = :p AND pk = :p", "KeyConditionExpressions must only contain one condition per key"),
        ("pk = :a", "One or more parameter values were invalid: Condition parameter type does not match schema type"),
    ])
    func refuses(_ text: String, _ message: String) throws {
        let refused = Self.refusal(text, values: [":p": .s("u"), ":a": try number("1")]) {
            (condition) throws(DynamoError) in
            try KeyCondition(condition, table: table)
        }
        #expect(refused == message)
    }

    /// The message `read` refuses the parsed condition `text` with, nil if it does not.
    static func refusal(
        _ text: String, values: [String: AttributeValue],
        _ read: (Condition) throws(DynamoError) -> KeyCondition
    ) -> String? {
        let context = ExpressionContext(names: [:], values: values)
        do throws(DynamoError) {
            _ = try read(ExpressionParser.condition(text, kind: "KeyConditionExpression", context: context))
        } catch {
            return error.message
        }
        return nil
    }

    /// In a local index, an entry's key carries the index sort key and then the table's:
    /// the range still holds exactly the entries whose index sort key satisfies the
    /// condition, whatever table sort keys follow (strings with zero bytes and prefixes
    /// of one another included).
    @Test(arguments: ["s = :a", "s < :a", "s <= :a", "s > :a", "s >= :a", "s BETWEEN :a AND :b", "begins_with(s, :a)"])
    func indexRangeMatchesCondition(_ sortCondition: String) throws {
        let index = SecondaryIndex(
            name: "by-s", id: 9, partitionKey: table.partitionKey, sortKey: KeyAttribute(name: "s", type: "S"),
            projection: IndexProjection(kind: .keysOnly))
        let maintenance = IndexMaintenance(partitionKey: "pk", sortKey: "sk", indexes: [index])
        let strings = ["", "a", "a\u{0}", "a\u{0}b", "a\u{1}", "ab", "abc", "b", "\u{0}", "\u{FF}", "zz"]
        for bound in ["a", "a\u{0}", "ab", "b"] {
            var values = [":p": AttributeValue.s("user"), ":a": .s(bound)]
            if sortCondition.contains(":b") { values[":b"] = .s("b\u{0}") }
            let context = ExpressionContext(names: [:], values: values)
            let condition = try KeyCondition(
                ExpressionParser.condition(
                    "pk = :p AND " + sortCondition, kind: "KeyConditionExpression", context: context),
                index: index)
            let (lower, upper) = condition.keyRange(index: index.id)
            for text in strings where !text.isEmpty {
                for tableSort in ["-1", "0", "5", "1E+20"] {
                    let item: Item = ["pk": .s("user"), "sk": try number(tableSort), "s": .s(text)]
                    let key = try #require(maintenance.entry(of: item, in: index)).key
                    let inRange = !key.lexicographicallyPrecedes(lower) && key.lexicographicallyPrecedes(upper)
                    #expect(inRange == condition.matchesSort(.s(text)), "\(sortCondition) with \(bound), entry \(text)")
                }
            }
        }
    }

    /// A global index whose key is two partition key attributes and three sort key
    /// attributes: each condition's range holds exactly the entries whose key attributes
    /// satisfy it, against a model that reads the condition attribute by attribute; other
    /// partition key tuples are never in range.
    @Test(arguments: [
        "", "AND a = :a", "AND a < :a", "AND a = :a AND b = :b", "AND a = :a AND b >= :b",
        "AND a = :a AND b BETWEEN :b AND :b2", "AND a = :a AND b = :b AND begins_with(c, :c)",
        "AND a = :a AND b = :b AND c > :c",
    ])
    func multiAttributeRangeMatchesCondition(_ sortCondition: String) throws {
        let model = { (item: Item) -> Bool in Self.satisfies(sortCondition, item) }
        let index = SecondaryIndex(
            name: "multi", id: 11, global: true,
            partitionKeys: [KeyAttribute(name: "t", type: "S"), KeyAttribute(name: "r", type: "N")],
            sortKeys: [
                KeyAttribute(name: "a", type: "S"), KeyAttribute(name: "b", type: "N"),
                KeyAttribute(name: "c", type: "S"),
            ], projection: IndexProjection(kind: .keysOnly))
        let maintenance = IndexMaintenance(partitionKey: "pk", sortKey: "sk", indexes: [index])
        let values: [String: AttributeValue] = [
            ":t": .s("cup"), ":r": .n(Number(1)), ":a": .s("m"), ":b": .n(Number(2)), ":b2": .n(Number(3)),
            ":c": .s("x"),
        ]
        let context = ExpressionContext(names: [:], values: values)
        let condition = try KeyCondition(
            ExpressionParser.condition(
                "t = :t AND r = :r " + sortCondition, kind: "KeyConditionExpression", context: context),
            index: index)
        let (lower, upper) = condition.keyRange(index: index.id)
        var inside = 0
        for (t, r) in [("cup", 1), ("cup", 2), ("cu", 1), ("cupp", 1), ("cup\u{0}", 1)] {
            for a in ["", "l", "m", "m\u{0}", "ma", "n"] where !a.isEmpty {
                for b in [-1, 2, 3, 20] {
                    for c in ["w", "x", "x\u{0}", "xa", "y"] {
                        let item: Item = [
                            "pk": .s("p\(inside)"), "sk": .n(Number(b)), "t": .s(t), "r": .n(Number(r)), "a": .s(a),
                            "b": .n(Number(b)), "c": .s(c),
                        ]
                        let entry = try #require(maintenance.entry(of: item, in: index)).key
                        let inRange = !entry.lexicographicallyPrecedes(lower) && entry.lexicographicallyPrecedes(upper)
                        let expected = t == "cup" && r == 1 && model(item)
                        #expect(inRange == expected, "\(sortCondition): \(t) \(r) \(a) \(b) \(c)")
                        if t == "cup" && r == 1 {
                            let sorts: [AttributeValue] = [.s(a), .n(Number(b)), .s(c)]
                            #expect(condition.matchesSort(sorts) == model(item), "\(sortCondition): start key")
                        }
                        if inRange { inside += 1 }
                    }
                }
            }
        }
        #expect(inside > 0)
        // An item missing a key attribute is not in the index.
        let partial: Item = ["pk": .s("p"), "t": .s("cup"), "r": .n(Number(1)), "a": .s("m"), "c": .s("x")]
        #expect(maintenance.entry(of: partial, in: index) == nil)
    }

    /// The model: the condition read attribute by attribute (`:a` is "m", `:b` 2, `:b2` 3,
    /// `:c` "x").
    static func satisfies(_ sortCondition: String, _ item: Item) -> Bool {
        let (a, b, c) = (text(item["a"]), integer(item["b"]), text(item["c"]))
        switch sortCondition {
        case "": return true
        case "AND a = :a": return a == "m"
        case "AND a < :a": return a < "m"
        case "AND a = :a AND b = :b": return a == "m" && b == 2
        case "AND a = :a AND b >= :b": return a == "m" && b >= 2
        case "AND a = :a AND b BETWEEN :b AND :b2": return a == "m" && (2...3).contains(b)
        case "AND a = :a AND b = :b AND begins_with(c, :c)": return a == "m" && b == 2 && c.hasPrefix("x")
        case "AND a = :a AND b = :b AND c > :c": return a == "m" && b == 2 && c > "x"
        default: preconditionFailure("no model for \(sortCondition)")
        }
    }

    static func text(_ value: AttributeValue?) -> String { if case .s(let text)? = value { text } else { "" } }
    static func integer(_ value: AttributeValue?) -> Int {
        if case .n(let number)? = value, let integer = Int(number.description) { integer } else { .min }
    }

    @Test(arguments: [
        ("r = :r", "Query condition missed key schema element: t"),
        ("t = :t AND r < :r", "Query key condition not supported"),
        ("t = :t AND r = :r AND b = :b", "Query condition missed key schema element: a"),
        (
            "t = :t AND r = :r AND a < :a AND b = :b",
            "Query key condition not supported: sort key attribute a is compared with other than = and is not the "
                + "last sort key attribute the condition names"
        ),
        ("t = :t AND r = :r AND x = :a", "Query condition missed key schema element: a"),
    ])
    func multiAttributeRefusals(_ text: String, _ message: String) throws {
        let index = SecondaryIndex(
            name: "multi", id: 11, global: true,
            partitionKeys: [KeyAttribute(name: "t", type: "S"), KeyAttribute(name: "r", type: "N")],
            sortKeys: [KeyAttribute(name: "a", type: "S"), KeyAttribute(name: "b", type: "N")],
            projection: IndexProjection(kind: .keysOnly))
        let values: [String: AttributeValue] = [
            ":t": .s("cup"), ":r": .n(Number(1)), ":a": .s("m"), ":b": .n(Number(2)),
        ]
        let refused = Self.refusal(text, values: values) { (condition) throws(DynamoError) in
            try KeyCondition(condition, index: index)
        }
        #expect(refused == message)
    }
}
