// Microbenchmarks of the item model on the request path: a GetItem answer written from
// the stored item, decoded first (as before) or transcoded from its stored form
// (`ItemCodec.writeJSON`), for the API benchmark's item (a key and 1 KB string) and for
// an item of twenty attributes of mixed types; and a PutItem body parsed into an item.
//
//     cd Benchmarks && swift package --allow-writing-to-package-directory benchmark --target Model
import Benchmark
import GranaryModel

func number(_ text: String) -> AttributeValue { .n(try! Number(parsing: text)) }

let small: Item = ["pk": .s("user12345"), "v": .s(String(repeating: "x", count: 1000))]
let mixed: Item = {
    var item: Item = ["pk": .s("user12345"), "sk": number("1700000000")]
    for index in 0..<6 { item["name\(index)"] = .s("a value of some length \(index)") }
    for index in 0..<6 { item["count\(index)"] = number("\(index * 1234).5") }
    item["flag"] = .bool(true)
    item["tags"] = .ss(["red", "green", "blue"])
    item["address"] = .m([
        "street": .s("1 Main St"), "zip": number("12345"), "geo": .l([number("1.5"), number("-2.25")]),
    ])
    item["history"] = .l([.s("created"), .s("updated"), .null])
    return item
}()

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 10_000)

    for (name, item) in [("1 KB item", small), ("20 attributes", mixed)] {
        let stored = ItemCodec.encode(item)
        Benchmark("GetItem answer, decoded then written (\(name))") { benchmark in
            for _ in benchmark.scaledIterations {
                var output: [UInt8] = []
                output.reserveCapacity(stored.count * 2 + 64)
                try ItemCodec.decode(stored).writeJSON(to: &output)
                blackHole(output)
            }
        }
        Benchmark("GetItem answer, transcoded from the stored form (\(name))") { benchmark in
            for _ in benchmark.scaledIterations {
                var output: [UInt8] = []
                output.reserveCapacity(stored.count * 2 + 64)
                try ItemCodec.writeJSON(stored, to: &output)
                blackHole(output)
            }
        }
        Benchmark("GetItem answer, the value tree of before (\(name))") { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(JSON.object(["Item": try ItemCodec.decode(stored).json]).serialized())
            }
        }
        var body: [UInt8] = []
        JSON.object(["TableName": .string("bench"), "Item": item.json]).write(to: &body)
        Benchmark("PutItem body parsed into an item (\(name))") { benchmark in
            for _ in benchmark.scaledIterations {
                let json = try JSON.parse(body)
                blackHole(try Item(itemJSON: json["Item"]!))
            }
        }
    }
}
