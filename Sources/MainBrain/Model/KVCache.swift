import Kernels

/// How a KV cache stores keys and values.
public enum KVPrecision: String, Sendable, CaseIterable {
    /// Half the memory; what llama.cpp keeps by default (attention then rounds queries and
    /// weights to f16 as llama.cpp's CPU path does).
    case f16
    /// The f32 engine's (and the f32 reference outputs') cache.
    case f32

    public var bytes: Int { self == .f16 ? 2 : 4 }

    /// The cache each arithmetic computes as: f32 with the f32 engine's, else f16 (llama.cpp's
    /// and, for `.mixed`, half the memory of a long context).
    public static func matching(_ arithmetic: ProductArithmetic) -> KVPrecision {
        arithmetic == .exact ? .f32 : .f16
    }
}

/// Keys and values of every layer for the positions evaluated so far.
///
/// Storage for the full capacity is reserved up front but only touched as positions
/// fill, so an 8K-token cache costs memory only for what is used.
public final class KVCache: @unchecked Sendable {
    public let capacity: Int
    public let precision: KVPrecision
    let kvDim: Int
    /// Per layer: [capacity, kvDim] elements of `precision`.
    private let keys: [UnsafeMutableRawPointer]
    private let values: [UnsafeMutableRawPointer]
    /// Positions held; the next token goes to position `count`.
    public private(set) var count = 0
    /// Layers filled for every position held: nil for all; fewer after a partial pass
    /// (`Model.forward(throughLayer:)`), whose cache cannot serve a deeper one.
    public internal(set) var depth: Int?

    public init(config: ModelConfig, capacity: Int? = nil, precision: KVPrecision = .f32) {
        let cap = min(capacity ?? config.contextLength, config.contextLength)
        self.capacity = cap
        self.precision = precision
        kvDim = config.kvDim
        let bytes = max(1, cap * config.kvDim * precision.bytes)
        keys = (0..<config.layers).map { _ in UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64) }
        values = (0..<config.layers).map { _ in UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64) }
    }

    deinit {
        for p in keys + values { p.deallocate() }
    }

    /// Bytes a cache of `positions` positions takes (keys and values of every layer).
    public static func bytes(config: ModelConfig, positions: Int, precision: KVPrecision) -> Int {
        2 * config.layers * positions * config.kvDim * precision.bytes
    }

    /// Forgets positions from `position` on (a shared prompt stays; candidates are replaced).
    public func truncate(to position: Int) {
        precondition(position >= 0 && position <= count, "truncate(to: \(position)) with \(count) positions held")
        count = position
    }

    public func clear() {
        count = 0
        depth = nil
    }

    func advance(by n: Int) { count += n }

    /// Takes the first `positions` positions of `other` (a cache of the same model and precision)
    /// as its own, in place of what it held.
    func copyPrefix(of other: KVCache, positions: Int) {
        precondition(other.kvDim == kvDim && other.precision == precision && other.keys.count == keys.count)
        precondition(positions <= other.count && positions <= capacity && other.depth == nil)
        let bytes = positions * kvDim * precision.bytes
        for layer in keys.indices {
            keys[layer].copyMemory(from: other.keys[layer], byteCount: bytes)
            values[layer].copyMemory(from: other.values[layer], byteCount: bytes)
        }
        count = positions
        depth = nil
    }

    /// Stores one position's keys and values (kvDim floats each), rounded to the cache's precision.
    func store(layer: Int, position: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>) {
        let offset = position * kvDim * precision.bytes
        switch precision {
        case .f32:
            (keys[layer] + offset).assumingMemoryBound(to: Float.self).update(from: k, count: kvDim)
            (values[layer] + offset).assumingMemoryBound(to: Float.self).update(from: v, count: kvDim)
        case .f16:
            storeHalves(k, into: keys[layer] + offset, count: kvDim)
            storeHalves(v, into: values[layer] + offset, count: kvDim)
        }
    }

    func keys(layer: Int) -> UnsafeRawPointer { UnsafeRawPointer(keys[layer]) }
    func values(layer: Int) -> UnsafeRawPointer { UnsafeRawPointer(values[layer]) }
}
