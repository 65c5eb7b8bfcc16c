// granary-treebench: the B-tree's point reads and the replica store's durable inserts,
// for tools/bench-tree to set beside fio and the peers (LMDB, SQLite, RocksDB).
//
//     granary-treebench load   --dir PATH --keys N [--value-bytes 100]
//     granary-treebench read   --dir PATH --keys N --depth D --seconds S (--cache-pages P | --memory MiB)
//     granary-treebench insert --dir PATH --writers W --seconds S [--value-bytes 100] [--memory MiB]
//     granary-treebench scan   --dir PATH --seconds S --cache-pages P
//
// Keys are 16 bytes ("key" and 13 decimal digits), values `--value-bytes` bytes. `read`
// runs D concurrent readers of uniformly random keys against the tree alone (read-only,
// so the readers need no lock); `insert` writes random new keys through the store (WAL,
// then tree, with checkpoints), each durable before the writer goes on; `scan` reads the
// tree in key order from the first key, 1,000 entries a call, until the end or the time is
// up, and reports MB/s of keys and values.
import BenchmarkSupport
import Dispatch
import Glibc
import GranaryIO
import GranaryStorage
import Histogram

struct Options {
    var mode = ""
    var directory = ""
    var keys = 1_000_000
    var valueBytes = 100
    var depth = 1
    var writers = 1
    var seconds = 5.0
    var cachePages = 8192
    /// A memory budget in MiB for the store (insert) or the tree's cache (read); 0: none.
    var memoryMiB = 0

    init(_ arguments: [String]) {
        guard arguments.count > 1 else {
            fail("granary-treebench", "usage: granary-treebench load|read|insert --dir PATH ...")
        }
        mode = arguments[1]
        var iterator = arguments.dropFirst(2).makeIterator()
        while let flag = iterator.next() {
            guard let value = iterator.next() else { fail("granary-treebench", "\(flag) needs a value") }
            switch flag {
            case "--dir": directory = value
            case "--keys": keys = Int(value) ?? 0
            case "--value-bytes": valueBytes = Int(value) ?? -1
            case "--depth": depth = Int(value) ?? 0
            case "--writers": writers = Int(value) ?? 0
            case "--seconds": seconds = Double(value) ?? 0
            case "--cache-pages": cachePages = Int(value) ?? 0
            case "--memory": memoryMiB = Int(value) ?? -1
            default: fail("granary-treebench", "unknown flag \(flag)")
            }
        }
        guard ["load", "read", "insert", "scan"].contains(mode), !directory.isEmpty, keys > 0,
            (0...3000).contains(valueBytes),
            (1...1024).contains(depth), (1...1024).contains(writers), seconds > 0, cachePages > 0,
            memoryMiB == 0 || memoryMiB >= 16
        else { fail("granary-treebench", "bad arguments") }
    }
}

func key(_ index: Int) -> [UInt8] {
    var digits = Array(String(index).utf8)
    digits = [UInt8](repeating: 48, count: max(0, 13 - digits.count)) + digits
    return Array("key".utf8) + digits
}

/// Results, touched only on the reactor thread; read after the semaphore.
final class Tally: @unchecked Sendable {
    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    var operations = 0
    var misses = 0
    var pageReads = 0
    var bytes = 0
    var elapsed = 0.0
    var error: String?
    /// Key choice without a system call per key.
    var random = SplitMix64(seed: nowNanoseconds())

    func randomIndex(below bound: Int) -> Int { Int(random.next() % UInt64(bound)) }
}

/// The tree shared by the reader tasks. @unchecked: every task runs on the one reactor
/// thread, so the readers interleave but never run at once.
final class SharedTree: @unchecked Sendable {
    let tree: BTree<ReactorStorage>
    init(_ tree: BTree<ReactorStorage>) { self.tree = tree }
}

let options = Options(CommandLine.arguments)
if mkdir(options.directory, 0o755) != 0 && errno != EEXIST {
    fail("granary-treebench", "cannot create \(options.directory)")
}
let group = try ReactorGroup(cpus: [ReactorGroup.availableCPUs().first])
let reactor = group.reactors[0]
let tally = Tally()
let value = [UInt8](repeating: 0xA5, count: options.valueBytes)

func run() async throws {
    let storage = ReactorStorage(path: options.directory, reactor: reactor)
    switch options.mode {
    case "load":
        // Keys in a shuffled order, as a real load would arrive, checkpointed as it goes.
        let tree = try await BTree.open(storage: storage)
        var order = Array(0..<options.keys)
        order.shuffle()
        let start = nowNanoseconds()
        for (count, index) in order.enumerated() {
            try await tree.put(key(index), value)
            if count % 50_000 == 49_999 { try await tree.checkpoint(lsn: UInt64(count)) }
        }
        try await tree.checkpoint(lsn: UInt64(options.keys))
        tally.operations = options.keys
        tally.elapsed = Double(nowNanoseconds() - start) / 1e9
    case "read":
        var treeOptions = BTree<ReactorStorage>.Options()
        treeOptions.cachePages =
            options.memoryMiB > 0
            ? ReplicaStore<ReactorStorage>.Options(memoryBudgetBytes: options.memoryMiB << 20).tree.cachePages
            : options.cachePages
        let shared = SharedTree(try await BTree.open(storage: storage, options: treeOptions))
        let tree = shared.tree
        // Warm the cache with a pass of random reads, then measure.
        for _ in 0..<min(options.cachePages * 4, 200_000) {
            _ = try await tree.get(key(tally.randomIndex(below: options.keys)))
        }
        let start = nowNanoseconds()
        let readsBefore = tree.pageReads
        let deadline = start + UInt64(options.seconds * 1e9)
        try await withThrowingTaskGroup(of: Void.self) { readers in
            for _ in 0..<options.depth {
                readers.addTask {
                    // Every eighth lookup is timed for the histogram, and the deadline is
                    // read from the coarse clock: two precise clock reads per lookup were 6%
                    // of the CPU on this VM's clock (fio times with the TSC).
                    var count = 0
                    while coarseNanoseconds() < deadline {
                        count += 1
                        let began = count % 8 == 0 ? nowNanoseconds() : 0
                        if try await shared.tree.get(key(tally.randomIndex(below: options.keys))) == nil {
                            tally.misses += 1
                        }
                        tally.operations += 1
                        if began != 0 { _ = tally.histogram.record(nowNanoseconds() - began) }
                    }
                }
            }
            try await readers.waitForAll()
        }
        tally.elapsed = Double(nowNanoseconds() - start) / 1e9
        tally.pageReads = tree.pageReads - readsBefore
    case "scan":
        var treeOptions = BTree<ReactorStorage>.Options()
        treeOptions.cachePages = options.cachePages
        let tree = try await BTree.open(storage: storage, options: treeOptions)
        let start = nowNanoseconds()
        let deadline = start + UInt64(options.seconds * 1e9)
        var from: [UInt8]? = nil
        while nowNanoseconds() < deadline {
            let batch = try await tree.scan(from: from, limit: 1000)
            for entry in batch {
                tally.bytes += entry.key.count + entry.value.count
                tally.operations += 1
            }
            guard batch.count == 1000, let last = batch.last else { break }
            from = last.key + [0]
        }
        tally.elapsed = Double(nowNanoseconds() - start) / 1e9
        tally.pageReads = tree.pageReads
    default:  // insert
        let storeOptions =
            options.memoryMiB > 0
            ? ReplicaStore<ReactorStorage>.Options(memoryBudgetBytes: options.memoryMiB << 20)
            : ReplicaStore<ReactorStorage>.Options()
        let store = try await ReplicaStore.open(storage: storage, options: storeOptions, executor: reactor)
        let start = nowNanoseconds()
        let deadline = start + UInt64(options.seconds * 1e9)
        try await withThrowingTaskGroup(of: Void.self) { writers in
            for _ in 0..<options.writers {
                writers.addTask {
                    while true {
                        let began = nowNanoseconds()
                        if began >= deadline { return }
                        try await store.put(key(tally.randomIndex(below: 1 << 40)), value)
                        tally.operations += 1
                        _ = tally.histogram.record(nowNanoseconds() - began)
                    }
                }
            }
            try await writers.waitForAll()
        }
        tally.elapsed = Double(nowNanoseconds() - start) / 1e9
        await store.close()
    }
}

runAndWait(on: reactor) {
    do { try await run() } catch { tally.error = "\(error)" }
}
group.stop()
if let error = tally.error { fail("granary-treebench", error) }
let microseconds = { (quantile: Double) in Double(tally.histogram.valueAtPercentile(quantile)) / 1000 }
var status = rusage()
getrusage(RUSAGE_SELF.rawValue, &status)
print(
    """
    {"tool":"granary","mode":"\(options.mode)","depth":\(options.depth),"writers":\(options.writers),\
    "cache_pages":\(options.cachePages),"ops_per_s":\(Int(Double(tally.operations) / tally.elapsed)),\
    "page_reads_per_s":\(Int(Double(tally.pageReads) / tally.elapsed)),\
    "mb_per_s":\(Double(tally.bytes) / tally.elapsed / 1e6),\
    "p50_us":\(microseconds(50)),"p99_us":\(microseconds(99)),"misses":\(tally.misses),"max_rss_kib":\(status.ru_maxrss)}
    """)
