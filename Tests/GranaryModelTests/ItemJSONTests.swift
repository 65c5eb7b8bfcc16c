import Testing
@testable import GranaryModel

/// Items written straight to bytes (`writeJSON`, for Query and Scan pages) read back as
/// the same JSON the tree of values (`json`) gives, for every type and for escapes.
@Suite struct ItemJSONTests {
    @Test func writtenItemsParseToTheirJSON() throws {
        let item: Item = [
            "s": .s("plain"), "escaped": .s("quote \" backslash \\ newline \n tab \t bell \u{07} é 😀"),
            "empty": .s(""), "n": .n(try Number(parsing: "-12.50")), "b": .b([0, 1, 2, 255]),
            "yes": .bool(true), "no": .bool(false), "nothing": .null,
            "m": .m(["inner": .m(["deep": .l([.s("x"), .n(try Number(parsing: "1e3")), .null])]), "k": .bool(false)]),
            "l": .l([]), "emptyMap": .m([:]),
            "ss": .ss(["a", "b\"c"]), "ns": .ns([try Number(parsing: "1"), try Number(parsing: "2.5")]),
            "bs": .bs([[1], [2, 3]]), "name \"quoted\"": .s("v"),
        ]
        var bytes: [UInt8] = []
        item.writeJSON(to: &bytes)
        #expect(try JSON.parse(bytes) == item.json)
        for (name, value) in item {
            var one: [UInt8] = []
            value.writeJSON(to: &one)
            #expect(try JSON.parse(one) == value.json, "\(name)")
        }
        var empty: [UInt8] = []
        Item().writeJSON(to: &empty)
        #expect(empty == Array("{}".utf8))
    }

    /// GetItem, Query and Scan write an item from its stored form (`ItemCodec.writeJSON`)
    /// without decoding it: the same JSON as the decoded item's, numbers in canonical form,
    /// and the same DynamoDB size (`storedSize`, which counts a page's 1 MB).
    @Test func storedItemsTranscodeToTheirJSON() throws {
        let numbers = [
            "0", "-0.0", "12.50", "-12.5", "0.007", "1e3", "1200", "123.456", "-1E-130",
            "9.9999999999999999999999999999999999999E+125", "0.1", "10",
        ]
        var item: Item = [
            "escaped": .s("quote \" backslash \\ newline \n bell \u{07} é 😀"), "empty": .s(""),
            "b": .b([0, 1, 2, 255]), "emptyB": .b([]), "yes": .bool(true), "no": .bool(false), "nothing": .null,
            "m": .m(["inner": .m(["deep": .l([.s("x"), .n(try Number(parsing: "1e3")), .null, .m([:])])])]),
            "l": .l([]), "ss": .ss(["a", "b\"c"]), "ns": .ns([try Number(parsing: "1"), try Number(parsing: "-2.5")]),
            "bs": .bs([[1], [2, 3]]), "name \"quoted\" \u{01}": .s("v"),
        ]
        for (index, text) in numbers.enumerated() { item["n\(index)"] = .n(try Number(parsing: text)) }
        for candidate in [item, Item(), ["only": .s("one")]] {
            var bytes: [UInt8] = []
            try ItemCodec.writeJSON(ItemCodec.encode(candidate), to: &bytes)
            #expect(try JSON.parse(bytes) == candidate.json)
            #expect(try ItemCodec.storedSize(ItemCodec.encode(candidate)) == candidate.sizeBytes)
            // An index read asks whether an entry is a reference by its names alone.
            for name in Array(item.keys) + ["", "inner", "absent", "n"] {
                #expect(
                    try ItemCodec.hasAttribute(named: name, in: ItemCodec.encode(candidate)) == (candidate[name] != nil)
                )
            }
            #expect(try ItemCodec.hasAttribute(named: "", in: ItemCodec.encode(candidate.merging(["": .null]) { $1 })))
        }
        var zero: [UInt8] = []
        try ItemCodec.writeJSON(ItemCodec.encode(["z": .n(.zero)]), to: &zero)
        #expect(zero == Array(#"{"z":{"N":"0"}}"#.utf8))
        var truncated = ItemCodec.encode(item)
        truncated.removeLast()
        var ignored: [UInt8] = []
        #expect(throws: ItemCodec.DecodingError.self) { try ItemCodec.writeJSON(truncated, to: &ignored) }
        #expect(throws: ItemCodec.DecodingError.self) { try ItemCodec.storedSize(truncated) }
        #expect(throws: ItemCodec.DecodingError.self) { try ItemCodec.hasAttribute(named: "absent", in: truncated) }
    }

    @Test func serializedFragmentsAreWrittenAsTheyAre() throws {
        let page = JSON.object(["Items": .serialized(Array(#"[{"a":{"S":"b"}}]"#.utf8)), "Count": .number("1")])
        #expect(
            try JSON.parse(page.serialized())
                == JSON.object(["Items": .array([.object(["a": .object(["S": .string("b")])])]), "Count": .number("1")])
        )
    }
}
