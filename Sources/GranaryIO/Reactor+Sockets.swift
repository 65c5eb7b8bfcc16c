import CShims
import Glibc

/// Socket operations on the ring. Listening sockets are made with plain system calls at
/// start-up (`SocketAddress.listen`); everything after that goes through io_uring.
extension Reactor {
    /// Accepts connections on `listener` until cancelled or the reactor stops: one
    /// multishot request, one completion per connection (the result is the new
    /// descriptor, or -errno). Runs `handler` on this thread for each.
    @discardableResult
    public func acceptConnections(
        on listener: Int32, _ handler: @escaping (Completion) -> Void
    ) -> OperationID? {
        submit(handler) { sqe, _ in
            io_uring_prep_multishot_accept(sqe, listener, nil, nil, Int32(SOCK_CLOEXEC.rawValue))
        }
    }

    /// Receives up to `buffer.count` bytes; returns the count (0 when the peer closed).
    /// With a `timeout`, a peer that sends nothing for that long gets ECANCELED.
    public func receive(
        _ socket: Int32, into buffer: UnsafeMutableRawBufferPointer, timeout: Duration? = nil
    ) async throws(Errno) -> Int {
        let prepare = { (sqe: UnsafeMutablePointer<io_uring_sqe>, _: UnsafeMutableRawPointer) in
            io_uring_prep_recv(sqe, socket, buffer.baseAddress, buffer.count, 0)
        }
        let completion: Completion
        if let timeout {
            completion = await perform(timeout: timeout, prepare)
        } else {
            completion = await perform(prepare)
        }
        return Int(try completion.get())
    }

    /// Sends all of `buffer`, as many requests as the kernel needs.
    public func sendAll(_ socket: Int32, _ buffer: UnsafeRawBufferPointer) async throws(Errno) {
        var sent = 0
        while sent < buffer.count {
            let remaining = UnsafeRawBufferPointer(rebasing: buffer[sent...])
            let completion = await perform { sqe, _ in
                io_uring_prep_send(sqe, socket, remaining.baseAddress, remaining.count, Int32(MSG_NOSIGNAL))
            }
            sent += Int(try completion.get())
        }
    }

    /// Connects a new TCP socket to `address`; returns its descriptor. With a `timeout`, a
    /// connection not made within it fails with ECANCELED (an unanswered SYN otherwise
    /// waits out the kernel's retries, minutes). With `unacknowledgedTimeout`, the
    /// connection fails once sent data goes unacknowledged that long (TCP_USER_TIMEOUT),
    /// rather than after the kernel's retransmissions, a quarter of an hour.
    public func connect(
        to address: SocketAddress, timeout: Duration? = nil, unacknowledgedTimeout: Duration? = nil
    ) async throws(Errno) -> Int32 {
        let socket = try systemCall("socket") {
            Glibc.socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        var noDelay: Int32 = 1
        _ = setsockopt(socket, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        if let unacknowledgedTimeout {
            var milliseconds = UInt32(unacknowledgedTimeout / .milliseconds(1))
            _ = setsockopt(
                socket, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, &milliseconds, socklen_t(MemoryLayout<UInt32>.size))
        }
        let prepare = { (sqe: UnsafeMutablePointer<io_uring_sqe>, scratch: UnsafeMutableRawPointer) in
            // The kernel copies the address when it takes the submission, after we return.
            let length = address.copy(to: scratch, capacity: OperationTable.scratchBytes - 16)
            io_uring_prep_connect(sqe, socket, scratch.assumingMemoryBound(to: sockaddr.self), length)
        }
        let completion: Completion
        if let timeout {
            completion = await perform(timeout: timeout, prepare)
        } else {
            completion = await perform(prepare)
        }
        if completion.result < 0 {
            Glibc.close(socket)
            throw Errno(result: completion.result)
        }
        return socket
    }
}
