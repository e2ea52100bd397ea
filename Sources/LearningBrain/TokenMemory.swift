import Kernels

/// The learning brain's token memory (the kNN-LM family): one entry per learned token, holding a
/// key (the main brain's representation of the context, projected), the token that followed
/// (value) and where it came from (document version and position).
///
/// Keys are kept as f16, as they are persisted; search runs on their exact f32 values, so a
/// memory read back from disk answers exactly as the one that wrote it. Exact search is a BLAS
/// product of the queries with blocks of keys; distances are squared L2. Removing documents
/// compacts in order, so forgetting leaves the very arrays a memory that never saw them holds.
///
/// Beyond `exactLimit` entries, with a coarse quantizer set (`useInvertedFile`), a query reads
/// only the keys filed under its `probes` nearest centres (an inverted file): exact search reads
/// every key, which at a million entries costs more than the main brain's whole step. An entry's
/// list follows from its key and the shipped centres alone, so forgetting stays exact there too.
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

    public var exactLimit = 262_144
    public var probes = 16
    public private(set) var quantizer: CoarseQuantizer?
    /// Each entry's list, and each list's entries in order.
    private var listOfEntry: [Int32] = []
    private var lists: [[Int32]] = []

    /// Files every entry (and every later one) under its nearest centre; nil: exact search only.
    public func useInvertedFile(_ quantizer: CoarseQuantizer?) {
        precondition(quantizer.map { $0.dimension == dimension } ?? true, "the quantizer's keys are of another size")
        self.quantizer = quantizer
        listOfEntry = quantizer?.lists(of: searchKeys) ?? []
        fileEntries()
    }

    private func fileEntries() {
        lists = Array(repeating: [], count: quantizer?.count ?? 0)
        for (entry, list) in listOfEntry.enumerated() { lists[Int(list)].append(Int32(entry)) }
    }

    public init(dimension: Int) {
        precondition(dimension > 0)
        self.dimension = dimension
    }

    /// Appends entries: `keys` holds `values.count` rows of `dimension` floats.
    public func append(keys newKeys: [Float], values newValues: [Int32], document: Int64, positions newPositions: [Int32]) {
        precondition(newKeys.count == newValues.count * dimension && newPositions.count == newValues.count)
        keys.reserveCapacity(keys.count + newKeys.count)
        let first = count
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
        if let quantizer {
            let filed = quantizer.lists(of: Array(searchKeys[first * dimension..<count * dimension]))
            for (i, list) in filed.enumerated() { lists[Int(list)].append(Int32(first + i)) }
            listOfEntry += filed
        }
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
        if quantizer != nil {
            listOfEntry = keep.map { listOfEntry[$0] }
            fileEntries()
        }
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
    /// first; ties go to the earlier entry. Exact up to `exactLimit` entries (or without a
    /// quantizer), from the `probes` nearest lists beyond.
    public func search(_ queries: [Float], k: Int) -> [[Neighbor]] {
        let m = queries.count / dimension
        precondition(queries.count == m * dimension && k > 0)
        guard count > 0, m > 0 else { return Array(repeating: [], count: m) }
        let queryNorms = squaredNorms(queries, dimension: dimension)
        let best: [Nearest]
        if let quantizer, count > exactLimit {
            best = queries.withUnsafeBufferPointer { q in
                (0..<m).map { searchLists(q.baseAddress! + $0 * dimension, norm: queryNorms[$0], k: k, quantizer: quantizer) }
            }
        } else {
            best = searchAll(queries, norms: queryNorms, k: k)
        }
        return best.map { nearest in
            nearest.found.map { Neighbor(distance: $0.distance, entry: $0.entry, value: values[$0.entry], document: documents[$0.entry],
                                         position: positions[$0.entry]) }
        }
    }

    /// The k best so far, nearest first; an entry offered later wins no tie.
    struct Nearest {
        let k: Int
        var found: [(distance: Float, entry: Int)] = []

        mutating func offer(_ d: Float, _ entry: Int) {
            if found.count == k, d >= found[k - 1].distance { return }
            // Sorted insertion: k is small (tens).
            var at = found.count
            while at > 0 && found[at - 1].distance > d { at -= 1 }
            found.insert((d, entry), at: at)
            if found.count > k { found.removeLast() }
        }
    }

    private func searchAll(_ queries: [Float], norms queryNorms: [Float], k: Int) -> [Nearest] {
        let m = queryNorms.count
        var best = Array(repeating: Nearest(k: k), count: m)
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
                for j in 0..<n { best[qi].offer(max(0, queryNorms[qi] - 2 * dots[qi * n + j] + norms[start + j]), start + j) }
            }
            start += n
        }
        return best
    }

    /// One query against the entries of its nearest lists, gathered block by block into one
    /// BLAS product each; visited in entry order, so ties break as in exact search.
    private func searchLists(_ query: UnsafePointer<Float>, norm: Float, k: Int, quantizer: CoarseQuantizer) -> Nearest {
        var candidates: [Int32] = []
        for list in quantizer.nearestLists(query, probes: probes) { candidates += lists[list] }
        candidates.sort()
        var best = Nearest(k: k)
        let blockRows = min(Self.block, candidates.count)
        var gathered = [Float](repeating: 0, count: blockRows * dimension), dots = [Float](repeating: 0, count: blockRows)
        searchKeys.withUnsafeBufferPointer { keys in
            gathered.withUnsafeMutableBufferPointer { g in
                dots.withUnsafeMutableBufferPointer { out in
                    for start in stride(from: 0, to: candidates.count, by: Self.block) {
                        let n = min(Self.block, candidates.count - start)
                        for i in 0..<n {
                            (g.baseAddress! + i * dimension).update(from: keys.baseAddress! + Int(candidates[start + i]) * dimension,
                                                                    count: dimension)
                        }
                        matmul(out.baseAddress!, query, g.baseAddress!, rows: 1, outFeatures: n, inFeatures: dimension)
                        for i in 0..<n {
                            let entry = Int(candidates[start + i])
                            best.offer(max(0, norm - 2 * out[i] + norms[entry]), entry)
                        }
                    }
                }
            }
        }
        return best
    }
}
