import Kernels

/// The learning brain's token memory (the kNN-LM family): one entry per learned token, holding a
/// key (the main brain's representation of the context, projected), the token that followed
/// (value) and where it came from (document version and position).
///
/// Keys are kept as f16, as they are persisted; search runs on their exact f32 values, so a
/// memory read back from disk answers exactly as the one that wrote it. Exact search is a BLAS
/// product of the queries with blocks of keys; distances are squared L2. Removing documents
/// compacts in order, so forgetting leaves the very arrays a memory that never saw them holds.
public final class TokenMemory {
    public let dimension: Int
    private(set) public var keys: [UInt16] = []
    /// The keys' f32 values (of the f16 bits) and squared norms, for search.
    private var searchKeys: [Float] = []
    private var norms: [Float] = []
    private(set) public var values: [Int32] = []
    private(set) public var documents: [Int64] = []
    private(set) public var positions: [Int32] = []

    public var count: Int { values.count }

    public init(dimension: Int) {
        precondition(dimension > 0)
        self.dimension = dimension
    }

    /// Appends entries: `keys` holds `values.count` rows of `dimension` floats.
    public func append(keys newKeys: [Float], values newValues: [Int32], document: Int64, positions newPositions: [Int32]) {
        precondition(newKeys.count == newValues.count * dimension && newPositions.count == newValues.count)
        keys.reserveCapacity(keys.count + newKeys.count)
        for row in 0..<newValues.count {
            var norm: Float = 0
            for j in 0..<dimension {
                let h = floatToHalf(newKeys[row * dimension + j])
                let f = halfToFloat(h)
                keys.append(h)
                searchKeys.append(f)
                norm += f * f
            }
            norms.append(norm)
        }
        values += newValues
        positions += newPositions
        documents += Array(repeating: document, count: newValues.count)
    }

    /// Drops every entry of these documents, keeping the others in order. Returns how many went.
    @discardableResult
    public func remove(documents forgotten: Set<Int64>) -> Int {
        let keep = documents.indices.filter { !forgotten.contains(documents[$0]) }
        let removed = count - keep.count
        guard removed > 0 else { return 0 }
        var k: [UInt16] = [], s: [Float] = []
        k.reserveCapacity(keep.count * dimension)
        s.reserveCapacity(keep.count * dimension)
        for i in keep {
            k += keys[i * dimension..<(i + 1) * dimension]
            s += searchKeys[i * dimension..<(i + 1) * dimension]
        }
        keys = k
        searchKeys = s
        norms = keep.map { norms[$0] }
        values = keep.map { values[$0] }
        documents = keep.map { documents[$0] }
        positions = keep.map { positions[$0] }
        return removed
    }

    public struct Neighbor: Equatable, Sendable {
        /// Squared L2 distance from the query.
        public let distance: Float
        public let entry: Int
        public let value: Int32
        public let document: Int64
        public let position: Int32
    }

    /// Keys per BLAS block: the dot products of a block stay in cache-sized scratch.
    static let block = 4096

    /// The `k` nearest entries of each query (`queries` holds rows of `dimension`), nearest
    /// first; ties go to the earlier entry.
    public func search(_ queries: [Float], k: Int) -> [[Neighbor]] {
        let m = queries.count / dimension
        precondition(queries.count == m * dimension && k > 0)
        guard count > 0, m > 0 else { return Array(repeating: [], count: m) }
        let queryNorms = (0..<m).map { q in (0..<dimension).reduce(Float(0)) { $0 + queries[q * dimension + $1] * queries[q * dimension + $1] } }
        var best = Array(repeating: [(distance: Float, entry: Int)](), count: m)
        var dots = [Float](repeating: 0, count: m * Self.block)
        var start = 0
        while start < count {
            let n = min(Self.block, count - start)
            queries.withUnsafeBufferPointer { q in
                searchKeys.withUnsafeBufferPointer { keys in
                    dots.withUnsafeMutableBufferPointer { out in
                        // One query (a generation step) is a matrix-vector product, which streams
                        // the keys once; sgemm would copy (pack) every block first.
                        matmul(out.baseAddress!, ldo: n, q.baseAddress!, keys.baseAddress! + start * dimension,
                               rows: m, outFeatures: n, inFeatures: dimension)
                    }
                }
            }
            for qi in 0..<m {
                var list = best[qi]
                for j in 0..<n {
                    let d = max(0, queryNorms[qi] - 2 * dots[qi * n + j] + norms[start + j])
                    if list.count == k, d >= list[k - 1].distance { continue }
                    // Sorted insertion: k is small (tens).
                    var at = list.count
                    while at > 0 && list[at - 1].distance > d { at -= 1 }
                    list.insert((d, start + j), at: at)
                    if list.count > k { list.removeLast() }
                }
                best[qi] = list
            }
            start += n
        }
        return best.map { list in
            list.map { Neighbor(distance: $0.distance, entry: $0.entry, value: values[$0.entry], document: documents[$0.entry],
                                position: positions[$0.entry]) }
        }
    }
}
