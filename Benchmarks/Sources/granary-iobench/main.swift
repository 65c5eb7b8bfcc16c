// granary-iobench: sustained 4 KiB O_DIRECT random reads through the reactor at a fixed
// queue depth, for a fixed time, in either of the reactor's two styles. It prints one JSON
// line (IOPS and latency percentiles) so that tools/bench-reactor can set it beside fio's
// figures for the same file in the same run.
//
//     granary-iobench --file PATH --depth 32 --seconds 5 --style async|callback [--cpu 0]
import CShims
import BenchmarkSupport
import Dispatch
import Glibc
import GranaryIO
import GranaryStorage
import Histogram

struct Options {
    var file = ""
    var depth = 1
    var seconds = 5.0
    var style = "async"
    var cpu: Int? = 0

    init(_ arguments: [String]) {
        var iterator = arguments.dropFirst().makeIterator()
        while let flag = iterator.next() {
            guard let value = iterator.next() else { fail("granary-iobench", "\(flag) needs a value") }
            switch flag {
            case "--file": file = value
            case "--depth": depth = Int(value) ?? 0
            case "--seconds": seconds = Double(value) ?? 0
            case "--style": style = value
            case "--cpu": cpu = value == "none" ? nil : Int(value)
            default: fail("granary-iobench", "unknown flag \(flag)")
            }
        }
        guard !file.isEmpty, (1...1024).contains(depth), seconds > 0, ["async", "callback"].contains(style) else {
            fail(
                "granary-iobench",
                "usage: granary-iobench --file PATH --depth 1...1024 --seconds S --style async|callback [--cpu N|none]")
        }
    }
}

/// The load's state; touched only on the reactor's thread.
final class Load: @unchecked Sendable {
    let descriptor: Int32
    let blocks: UInt64
    let deadline: UInt64
    var histogram = Histogram<UInt64>(highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three)
    var completed = 0
    var errors = 0
    var running = 0
    var pool: AlignedBufferPool?
    let done = DispatchSemaphore(value: 0)
    // SplitMix64: SystemRandomNumberGenerator would make a getrandom(2) system call per
    // read, which fio does not pay.
    var random = SplitMix64(seed: nowNanoseconds())

    init(descriptor: Int32, blocks: UInt64, deadline: UInt64) {
        self.descriptor = descriptor
        self.blocks = blocks
        self.deadline = deadline
    }

    /// One reader has passed the deadline; the last one lets the main thread go on.
    func readerFinished() {
        running -= 1
        if running == 0 { done.signal() }
    }

    func nextOffset() -> UInt64 { random.next() % blocks * 4096 }

    func record(started: UInt64, result: Int) {
        if result == 4096 { completed += 1 } else { errors += 1 }
        _ = histogram.record(nowNanoseconds() - started)
    }
}

/// One callback-style reader: each completion submits the next read.
func readChain(_ reactor: Reactor, _ load: Load, _ buffer: AlignedBuffer, finished: @escaping () -> Void) {
    let started = nowNanoseconds()
    guard started < load.deadline else { return finished() }
    reactor.submit(
        isFileIO: true,
        { completion in
            load.record(started: started, result: Int(completion.result))
            readChain(reactor, load, buffer, finished: finished)
        }
    ) { sqe, _ in
        io_uring_prep_read_fixed(sqe, load.descriptor, buffer.pointer, 4096, load.nextOffset(), Int32(buffer.index))
    }
}

let options = Options(CommandLine.arguments)
let descriptor = open(options.file, O_RDONLY | granary_O_DIRECT)
guard descriptor >= 0 else { fail("granary-iobench", "cannot open \(options.file) with O_DIRECT: \(Errno(errno))") }
var status = stat()
fstat(descriptor, &status)
let blocks = UInt64(status.st_size) / 4096
guard blocks > 0 else { fail("granary-iobench", "\(options.file) is smaller than one block") }

let group = try ReactorGroup(cpus: [options.cpu])
let reactor = group.reactors[0]
let start = nowNanoseconds()
let load = Load(descriptor: descriptor, blocks: blocks, deadline: start + UInt64(options.seconds * 1e9))
let style = options.style
let depth = options.depth
while !reactor.tryPost({
    let pool = try! AlignedBufferPool(reactor: reactor, bufferSize: 4096, bufferCount: depth)
    load.pool = pool
    load.running = depth
    for _ in 0..<depth {
        let buffer = pool.acquire()!
        if style == "callback" {
            readChain(reactor, load, buffer, finished: load.readerFinished)
        } else {
            Task(executorPreference: reactor) {
                while true {
                    let started = nowNanoseconds()
                    if started >= load.deadline { break }
                    let result =
                        (try? await reactor.read(load.descriptor, into: buffer, count: 4096, at: load.nextOffset()))
                        ?? -1
                    load.record(started: started, result: result)
                }
                load.readerFinished()
            }
        }
    }
}) {}
load.done.wait()
let elapsed = Double(nowNanoseconds() - start) / 1e9
group.stop()
let microseconds = { (quantile: Double) in Double(load.histogram.valueAtPercentile(quantile)) / 1000 }
print(
    """
    {"tool":"granary","style":"\(style)","depth":\(depth),"iops":\(Int(Double(load.completed) / elapsed)),\
    "mean_us":\((load.histogram.mean / 1000 * 10).rounded() / 10),"p50_us":\(microseconds(50)),\
    "p99_us":\(microseconds(99)),"errors":\(load.errors)}
    """)
