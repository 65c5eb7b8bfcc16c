import Testing
@testable import GranaryModel

@Suite struct NumberTests {
    @Test(arguments: [
        ("1.50", "1.5"), ("1E+2", "100"), ("0.001", "0.001"), ("-0", "0"), ("+7", "7"),
        ("00012.3400", "12.34"), ("1e-130", "0." + String(repeating: "0", count: 129) + "1"),
        ("-123.456e2", "-12345.6"),
        ("12345678901234567890123456789012345678", "12345678901234567890123456789012345678"),
    ])
    func canonicalForm(_ text: String, _ canonical: String) throws {
        #expect(try Number(parsing: text).description == canonical)
    }

    @Test(arguments: ["", "abc", "1.2.3", "1e", "--1", " 1", "1 ", "NaN", "Infinity", ".", "1e+"])
    func refusesText(_ text: String) {
        #expect(throws: DynamoError.validation("The parameter cannot be converted to a numeric value: \(text)")) {
            try Number(parsing: text)
        }
    }

    @Test func refusesRangeAndPrecision() {
        #expect(throws: DynamoError.self) { try Number(parsing: "1E+126") }
        #expect(throws: DynamoError.self) { try Number(parsing: "1E-131") }
        #expect(throws: DynamoError.self) { try Number(parsing: "123456789012345678901234567890123456789") }
        #expect((try? Number(parsing: "9.9999999999999999999999999999999999999E+125")) != nil)
    }

    @Test func comparesByValue() throws {
        let texts = ["-1E+10", "-100", "-12.5", "-12", "-0.5", "0", "0.001", "0.01", "1", "1.5", "2", "10", "1E+20"]
        let numbers = try texts.map { try Number(parsing: $0) }
        for (index, number) in numbers.enumerated() {
            for other in numbers[(index + 1)...] {
                #expect(number < other)
                #expect(
                    KeyEncoding.orderPreserving(number).lexicographicallyPrecedes(KeyEncoding.orderPreserving(other)))
            }
        }
        #expect(try Number(parsing: "1.0") == Number(parsing: "1"))
    }

    @Test func adds() throws {
        func sum(_ a: String, _ b: String) throws -> String {
            try (Number(parsing: a) + Number(parsing: b)).description
        }
        #expect(try sum("1", "2") == "3")
        #expect(try sum("0.1", "0.2") == "0.3")
        #expect(try sum("-5", "3") == "-2")
        #expect(try sum("5", "-5") == "0")
        #expect(try sum("999", "1") == "1000")
        #expect(try sum("1E+20", "-1") == "99999999999999999999")
        #expect(try (Number(parsing: "10") - Number(parsing: "12.5")).description == "-2.5")
    }
}

@Suite struct JSONTests {
    @Test func parsesAndSerializes() throws {
        let text = #"{"a":[1,-2.5e3,true,false,null],"b":"x\"\u00e9\ud83d\ude00\n"}"#
        let value = try JSON.parse(Array(text.utf8))
        #expect(value["b"] == .string("x\"é😀\n"))
        #expect(try JSON.parse(value.serialized()) == value)
    }

    @Test(arguments: ["", "{", "[1,]", "{\"a\" 1}", "tru", "01x", "\"\u{01}\"", "{} {}", "\"\\ud800\""])
    func refusesMalformed(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSON.parse(Array(text.utf8)) }
    }

    /// Strings are scanned eight bytes at a time: a byte that needs an escape, or may not
    /// appear raw, is found in every position of a word and across words.
    @Test func findsSpecialBytesAnywhereInAWord() throws {
        for length in 0..<20 {
            for position in 0..<max(length, 1) {
                for special in ["\"", "\\", "\n", "\u{01}", "\u{1F}"] {
                    var characters = Array(repeating: "a", count: length)
                    if length > 0 { characters[position] = special }
                    characters.append("é ~\u{7F}")
                    let text = characters.joined()
                    var written: [UInt8] = []
                    JSON.writeString(text, to: &written)
                    #expect(try JSON.parse(written) == .string(text))
                    if length > 0, special.utf8.first! < 0x20 {
                        let raw = Array("\"".utf8) + Array(text.utf8) + Array("\"".utf8)
                        #expect(throws: JSONParseError.self) { try JSON.parse(raw) }
                    }
                }
            }
        }
    }

    @Test func boundsNesting() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSON.parse(Array(deep.utf8)) }
    }
}

@Suite struct AttributeValueTests {
    @Test func roundTripsEveryType() throws {
        let text =
            #"{"s":{"S":""},"n":{"N":"1.50"},"b":{"B":"AAEC"},"t":{"BOOL":true},"z":{"NULL":true},"m":{"M":{"x":{"L":[{"N":"1"},{"S":"a"}]}}},"ss":{"SS":["a","b"]},"ns":{"NS":["1","2"]},"bs":{"BS":["AA==","AQ=="]}}"#
        let item = try Item(itemJSON: try JSON.parse(Array(text.utf8)))
        #expect(item["n"] == .n(try Number(parsing: "1.5")))
        #expect(item["b"] == .b([0, 1, 2]))
        #expect(try ItemCodec.decode(ItemCodec.encode(item)) == item)
        #expect(try Item(itemJSON: item.json) == item)
    }

    @Test func refusesInvalidValues() {
        func parse(_ text: String) throws { _ = try AttributeValue(json: try JSON.parse(Array(text.utf8))) }
        #expect(throws: DynamoError.self) { try parse(#"{}"#) }
        #expect(throws: DynamoError.self) { try parse(#"{"S":"a","N":"1"}"#) }
        #expect(throws: DynamoError.self) { try parse(#"{"NULL":false}"#) }
        #expect(throws: DynamoError.self) { try parse(#"{"SS":[]}"#) }
        #expect(throws: DynamoError.self) { try parse(#"{"SS":["a","a"]}"#) }
        #expect(throws: DynamoError.self) { try parse(#"{"NS":["1","1.0"]}"#) }
        #expect(throws: DynamoError.self) { try parse(#"{"S":5}"#) }
        let deep = String(repeating: #"{"L":["#, count: 35) + #"{"S":"x"}"# + String(repeating: "]}", count: 35)
        #expect(throws: DynamoError.self) { try parse(deep) }
    }

    @Test func sizesAsDynamoDBDoes() throws {
        let item: Item = ["name": .s("abc"), "n": .n(try Number(parsing: "123")), "flag": .bool(true)]
        #expect(item.sizeBytes == 4 + 3 + 1 + 3 + 4 + 1)
    }
}
