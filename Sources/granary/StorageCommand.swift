import ArgumentParser
import GranaryNode
import GranaryStorage

struct StorageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Exercise and check a storage engine directory (the write-ahead log).",
        subcommands: [Stress.self, Check.self])

    struct LogOptions: ParsableArguments {
        @Option(name: .customLong("dir"), help: "The log's directory (on a disk filesystem: O_DIRECT).")
        var directory: String

        @Option(name: .customLong("segment-bytes"), help: "Bytes per new segment file (a multiple of 4096).")
        var segmentBytes: Int = 64 << 20

        @Option(help: "How a group is made durable: dsync (one RWF_DSYNC write) or fdatasync (write, then fdatasync).")
        var durability: String = "dsync"

        @Option(help: "What to drive: log (the write-ahead log alone) or store (the log in front of the B-tree).")
        var layer: String = "store"

        func storageLayer() throws -> StorageExercise.Layer {
            guard let layer = StorageExercise.Layer(rawValue: layer) else {
                throw ValidationError("--layer must be log or store")
            }
            return layer
        }

        func walOptions() throws -> WALOptions {
            var options = WALOptions()
            guard segmentBytes % 4096 == 0, segmentBytes >= options.groupBytesMax + 4096, segmentBytes <= 1 << 30 else {
                throw ValidationError(
                    "--segment-bytes must be a multiple of 4096 between \(options.groupBytesMax + 4096) and 1 GiB")
            }
            options.segmentBytes = segmentBytes
            switch durability {
            case "fdatasync": options.durability = .writeThenDataSync
            case "dsync": options.durability = .dataSyncedWrite
            default: throw ValidationError("--durability must be fdatasync or dsync")
            }
            return options
        }
    }

    struct Stress: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Write from concurrent writers, printing 'ack <lsn> <key>' (log) or 'ack <key>' (store) for each durable write."
        )

        @OptionGroup var log: LogOptions

        @Option(help: "Concurrent writers (1...1024).")
        var writers: Int = 16

        @Option(name: .customLong("value-bytes"), help: "Bytes of value per record (0...65536).")
        var valueBytes: Int = 100

        @Option(help: "Stop after this many seconds (at most 3600).")
        var seconds: Double = 10

        @Option(
            name: .customLong("checkpoint-pages"),
            help: "Dirty pages that trigger a checkpoint (store layer, 1...1000000).")
        var checkpointPages: Int = 4096

        func run() throws {
            guard (1...1024).contains(writers) else { throw ValidationError("--writers must be 1...1024") }
            guard (0...65536).contains(valueBytes) else { throw ValidationError("--value-bytes must be 0...65536") }
            guard seconds > 0 && seconds <= 3600 else { throw ValidationError("--seconds must be in (0, 3600]") }
            var options = StorageExercise.StressOptions(directory: log.directory)
            options.writers = writers
            options.valueBytes = valueBytes
            options.seconds = seconds
            guard (1...1_000_000).contains(checkpointPages) else {
                throw ValidationError("--checkpoint-pages must be 1...1000000")
            }
            options.wal = try log.walOptions()
            options.layer = try log.storageLayer()
            options.checkpointPages = checkpointPages
            _ = try StorageExercise.stress(options)
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Read a log back without changing it, or recover a store and read every key; exit 1 on corruption, 2 on a garbled record."
        )

        @OptionGroup var log: LogOptions

        @Flag(help: "Print 'record <lsn> <key>' (log) or 'record <key>' (store) for every record.")
        var print = false

        func run() throws {
            let (records, garbled) = try StorageExercise.check(
                directory: log.directory, layer: try log.storageLayer(), wal: try log.walOptions(), printRecords: print)
            FileHandleStandardError.write("granary storage check: \(records) records, \(garbled) garbled\n")
            if garbled > 0 { throw ExitCode(2) }
        }
    }
}
