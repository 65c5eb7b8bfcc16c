// libFuzzer target: the expression parser and evaluator must never crash or hang, whatever
// the text. Built by tools/fuzz with `swiftc -sanitize=fuzzer,address` over GranaryModel's
// sources.

let fuzzContext: (names: [String: String], values: [String: AttributeValue]) = (
    ["#a": "a", "#b": "b", "#n": "name"],
    [":v": .s("x"), ":n": .n(try! Number(parsing: "5")), ":l": .l([.s("y")]), ":s": .ss(["p", "q"]), ":t": .s("S")]
)
let fuzzItem: Item = ["a": .n(try! Number(parsing: "1")), "b": .m(["c": .l([.s("d")])]), "name": .s("granary")]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzExpression(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let context = ExpressionContext(names: fuzzContext.names, values: fuzzContext.values)
    if let condition = try? ExpressionParser.condition(text, context: context) {
        _ = condition.evaluate(fuzzItem)
    }
    if let actions = try? ExpressionParser.update(text, context: context) {
        _ = try? UpdateEvaluation.apply(actions, to: fuzzItem)
    }
    if let paths = try? ExpressionParser.projection(text, context: context) {
        _ = Projection.apply(paths, to: fuzzItem)
    }
    if let json = try? JSON.parse(Array(UnsafeBufferPointer(start: data, count: size))) {
        _ = try? Item(itemJSON: json)
    }
    _ = try? Number(parsing: text)
    return 0
}
