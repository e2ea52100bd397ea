import Kernels

/// Keys and values of every layer for the positions evaluated so far.
///
/// Storage for the full capacity is reserved up front but only touched as positions
/// fill, so an 8K-token cache costs memory only for what is used.
public final class KVCache: @unchecked Sendable {
    public let capacity: Int
    let kvDim: Int
    /// Per layer: [capacity, kvDim].
    let keys: [FloatBuffer]
    let values: [FloatBuffer]
    /// Positions held; the next token goes to position `count`.
    public private(set) var count = 0

    public init(config: ModelConfig, capacity: Int? = nil) {
        let cap = min(capacity ?? config.contextLength, config.contextLength)
        self.capacity = cap
        kvDim = config.kvDim
        keys = (0..<config.layers).map { _ in FloatBuffer(count: cap * config.kvDim) }
        values = (0..<config.layers).map { _ in FloatBuffer(count: cap * config.kvDim) }
    }

    /// Forgets positions from `position` on (a shared prompt stays; candidates are replaced).
    public func truncate(to position: Int) {
        precondition(position >= 0 && position <= count, "truncate(to: \(position)) with \(count) positions held")
        count = position
    }

    public func clear() { count = 0 }

    func advance(by n: Int) { count += n }

    func keyPointer(layer: Int, position: Int) -> UnsafeMutablePointer<Float> {
        keys[layer].pointer + position * kvDim
    }
    func valuePointer(layer: Int, position: Int) -> UnsafeMutablePointer<Float> {
        values[layer].pointer + position * kvDim
    }
}
