// libFuzzer target: the HTTP/1.1 parser must never crash, whatever the bytes, and must
// only ever consume what it was given. Built by tools/fuzz over the parser's own files.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var input = UnsafeRawBufferPointer(start: data, count: size)
    // Parse a pipelined stream: each request consumed, then the rest.
    for _ in 0..<64 {
        switch HTTPParser().parse(input) {
        case .request(let request, let consumed):
            precondition(consumed > 0 && consumed <= input.count, "the parser consumed what it was not given")
            _ = request.keepAlive
            _ = HTTPResponse(status: .ok, body: request.body).serialized(keepAlive: request.keepAlive)
            input = UnsafeRawBufferPointer(rebasing: input[consumed...])
        case .needBody, .needMore, .failure:
            return 0
        }
    }
    return 0
}
