import Glibc
import GranaryIO
import GranaryRouter
import Logging

/// A running node: the reactors, each with its listener and HTTP server, over one data
/// directory.
public final class Node: Sendable {
    public let configuration: NodeConfiguration
    private let group: ReactorGroup
    private let dataDirectory: DataDirectory

    /// Why the node could not start, as a message for the operator.
    public struct StartupFailure: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Checks the machine, opens the data directory and starts one reactor per CPU, each
    /// listening on the configured address (SO_REUSEPORT spreads connections over them).
    public init(configuration: NodeConfiguration, logger: Logger) throws {
        do {
            try IOUringSupport.check()
        } catch {
            throw StartupFailure(description: error.description)
        }
        do {
            dataDirectory = try DataDirectory.open(configuration.dataDirectory)
        } catch {
            throw StartupFailure(description: error.description)
        }
        self.configuration = configuration
        let router = Router()
        let address = configuration.listen
        do {
            group = try ReactorGroup(cpus: configuration.cpus.map { $0 }) { reactor in
                let listener: Int32
                do {
                    listener = try address.listen()
                } catch {
                    throw StartupFailure(description: "granary: cannot listen on \(address): \(error)")
                }
                let server = HTTPServer(reactor: reactor, logger: logger) { request in
                    await router.handle(request)
                }
                server.start(listener: listener)
            }
        } catch let failure as StartupFailure {
            throw failure
        } catch {
            throw StartupFailure(description: "granary: cannot start the reactors: \(error)")
        }
    }

    /// Stops every reactor; returns when their threads have finished.
    public func stop() {
        group.stop()
    }
}
