/// Runs `body` on every element at once (each task on the executor its work calls, so a
/// call to a partition runs on that partition's core), and returns the results in order,
/// or throws the first failure once all have finished.
public func concurrently<Element: Sendable, Value: Sendable, Failure: Error>(
    _ elements: [Element], _ body: @escaping @Sendable (Element) async throws(Failure) -> Value
) async throws(Failure) -> [Value] {
    let outcomes = await withTaskGroup(of: (Int, Result<Value, Failure>).self) { group in
        for (index, element) in elements.enumerated() {
            group.addTask {
                do throws(Failure) { return (index, .success(try await body(element))) } catch {
                    return (index, .failure(error))
                }
            }
        }
        var outcomes = [Result<Value, Failure>?](repeating: nil, count: elements.count)
        for await (index, outcome) in group { outcomes[index] = outcome }
        return outcomes
    }
    return try outcomes.map { (outcome) throws(Failure) in try outcome!.get() }
}
