import Testing
@testable import GranaryModel

func value(_ text: String) -> AttributeValue {
    try! AttributeValue(json: try! JSON.parse(Array(text.utf8)))
}

func condition(
    _ text: String, names: [String: String] = [:], values: [String: AttributeValue] = [:]
) throws -> Condition {
    let context = ExpressionContext(names: names, values: values)
    let parsed = try ExpressionParser.condition(text, context: context)
    try context.checkAllUsed()
    return parsed
}

@Suite struct ConditionTests {
    let item: Item = [
        "id": .s("k1"), "count": value(#"{"N":"5"}"#), "tags": value(#"{"SS":["a","b"]}"#),
        "info": value(#"{"M":{"lst":{"L":[{"N":"1"},{"S":"two"}]},"name":{"S":"granary"}}}"#),
    ]

    @Test(arguments: [
        ("#c = :five", true), ("#c <> :five", false), ("#c < :six", true), ("#c BETWEEN :five AND :six", true),
        ("#c IN (:six, :five)", true), ("attribute_exists(info.lst[1])", true),
        ("attribute_not_exists(info.lst[2])", true),
        ("attribute_type(tags, :ss)", true), ("begins_with(info.#n, :gr)", true), ("contains(tags, :a)", true),
        ("contains(info.#n, :gr)", true), ("size(tags) = :two AND NOT (#c > :six OR absent = :five)", true),
        ("absent = gone", false), ("#c = :gr", false), ("#c < :gr", false), ("size(info.lst) > :two", false),
        ("absent <> :five", true), ("absent <> gone", true), ("absent < :five", false), ("absent IN (:five)", false),
    ])
    func evaluates(_ text: String, _ expected: Bool) throws {
        let names = ["#c": "count", "#n": "name"].filter { text.contains($0.key) }
        let values: [String: AttributeValue] = [
            ":five": value(#"{"N":"5.0"}"#), ":six": value(#"{"N":"6"}"#), ":two": value(#"{"N":"2"}"#),
            ":ss": .s("SS"), ":gr": .s("gran"), ":a": .s("a"),
        ].filter { text.contains($0.key) }
        #expect(try condition(text, names: names, values: values).evaluate(item) == expected)
    }

    @Test(arguments: [
        ("a = ", "Invalid ConditionExpression: Syntax error; token: \"<EOF>\", near: \"= <EOF>\""),
        ("status = :v", "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: status"),
        ("a = :missing", "An expression attribute value used in expression is not defined; attribute value: :missing"),
        ("#x = :v", "An expression attribute name used in the document path is not defined; attribute name: #x"),
        ("nosuch(a)", "Invalid ConditionExpression: Invalid function name; function: nosuch"),
        (
            "a = a",
            "Invalid ConditionExpression: The first operand must be distinct from the remaining operands for this operator or function; operator: =, first operand: [a]"
        ),
        (
            "a BETWEEN :v AND :n",
            "Invalid ConditionExpression: The BETWEEN operator requires same data type for lower and upper bounds; lower bound operand: AttributeValue: {S:x}, upper bound operand: AttributeValue: {N:1}"
        ),
        (
            "attribute_not_exists(:v)",
            "Invalid ConditionExpression: Operator or function requires a document path; operator or function: attribute_not_exists"
        ),
        (
            "size(:n) = :n",
            "Invalid ConditionExpression: Incorrect operand type for operator or function; operator or function: size, operand type: N"
        ),
        (
            "list_append(a, b) = :v",
            "Invalid ConditionExpression: The function is not allowed in a condition expression; function: list_append"
        ),
    ])
    func refuses(_ text: String, _ message: String) {
        let values: [String: AttributeValue] = [":v": .s("x"), ":n": .n(Number(1))].filter { text.contains($0.key) }
        #expect(throws: DynamoError.validation(message)) { try condition(text, values: values) }
    }

    @Test func refusesUnusedValues() {
        #expect(
            throws: DynamoError.validation(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {:unused}")
        ) {
            try condition("a = :v", values: [":v": .s("x"), ":unused": .s("y")])
        }
    }

    @Test func boundsNesting() {
        let deep = String(repeating: "(", count: 500) + "a = :v" + String(repeating: ")", count: 500)
        #expect(throws: DynamoError.self) { try condition(deep, values: [":v": .s("x")]) }
        let nots = String(repeating: "NOT ", count: 900) + "a = :v"
        #expect(throws: DynamoError.self) { try condition(nots, values: [":v": .s("x")]) }
    }
}

@Suite struct UpdateTests {
    func update(_ text: String, _ item: Item, values: [String: AttributeValue] = [:]) throws -> Item {
        let context = ExpressionContext(names: [:], values: values)
        let actions = try ExpressionParser.update(text, context: context)
        try context.checkAllUsed()
        return try UpdateEvaluation.apply(actions, to: item)
    }

    @Test func setsAddsRemovesDeletes() throws {
        let start: Item = [
            "id": .s("k"), "n": value(#"{"N":"1"}"#), "l": value(#"{"L":[{"N":"1"},{"N":"2"},{"N":"3"}]}"#),
            "s": value(#"{"SS":["a","b"]}"#), "m": value(#"{"M":{}}"#),
        ]
        let result = try update(
            "SET n = n + :one, m.x = :one, l[9] = :one, fresh = if_not_exists(fresh, :one) REMOVE l[0], l[1] ADD c :one DELETE s :a",
            start, values: [":one": value(#"{"N":"1"}"#), ":a": value(#"{"SS":["a"]}"#)])
        #expect(result["n"] == value(#"{"N":"2"}"#))
        #expect(result["m"] == value(#"{"M":{"x":{"N":"1"}}}"#))
        #expect(result["l"] == value(#"{"L":[{"N":"3"},{"N":"1"}]}"#))
        #expect(result["fresh"] == value(#"{"N":"1"}"#))
        #expect(result["c"] == value(#"{"N":"1"}"#))
        #expect(result["s"] == value(#"{"SS":["b"]}"#))
    }

    @Test func refusesWhatDynamoDBRefuses() {
        #expect(throws: DynamoError.self) { try update("SET a = :v SET b = :v", [:], values: [":v": .s("x")]) }
        #expect(throws: DynamoError.self) { try update("SET a = :v, a.b = :v", [:], values: [":v": .s("x")]) }
        #expect(throws: DynamoError.self) {
            try update("SET a = b + :v", ["b": .s("x")], values: [":v": value(#"{"N":"1"}"#)])
        }
        #expect(throws: DynamoError.self) {
            try update("SET a.b.c = :v", ["a": value(#"{"M":{}}"#)], values: [":v": .s("x")])
        }
        #expect(throws: DynamoError.self) { try update("ADD a :v", [:], values: [":v": .s("x")]) }
        #expect(throws: DynamoError.self) { try update("SET a = missing", [:]) }
        #expect(
            throws: DynamoError.validation(
                "Invalid UpdateExpression: Two document paths conflict with each other; must remove or rewrite one of these paths; path one: [a, b], path two: [a, [0]]"
            )
        ) {
            try update("SET a.b = :v REMOVE a[0]", [:], values: [":v": .s("x")])
        }
        #expect(
            throws: DynamoError.validation(
                "Invalid UpdateExpression: Incorrect operand type for operator or function; operator or function: list_append, operand type: S"
            )
        ) {
            try update("SET a = list_append(:v, a)", [:], values: [":v": .s("x")])
        }
    }

    @Test func sizeOfAConstant() throws {
        let context = ExpressionContext(names: [:], values: [":v": .s("four"), ":four": .n(Number(4))])
        let condition = try ExpressionParser.condition("size(:v) = :four", context: context)
        #expect(condition.evaluate(nil))
        #expect(
            Number(0) == .zero && Number(-120).description == "-120" && Number(Int.max).description == String(Int.max))
    }

    @Test func projects() throws {
        let item: Item = ["a": .s("x"), "m": value(#"{"M":{"l":{"L":[{"N":"1"},{"N":"2"}]},"o":{"S":"y"}}}"#)]
        let paths = try ExpressionParser.projection(
            "a, m.l[1], nope", context: ExpressionContext(names: [:], values: [:]))
        #expect(Projection.apply(paths, to: item) == ["a": .s("x"), "m": value(#"{"M":{"l":{"L":[{"N":"2"}]}}}"#)])
    }
}
