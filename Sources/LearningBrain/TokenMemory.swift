import Kernels

/// The learning brain's token memory (the kNN-LM family): one entry per learned token, holding a
/// key (the main brain's representation of the context, projected), the token that followed
/// (value) and where it came from (document version and position).
///
/// Keys are kept as f16, as they are persisted; search runs on their exact f32 values, so a
/// memory read back from disk answers exactly as the one that wrote it. Search is a BLAS product
/// of the queries with blocks of keys; distances are squared L2, ties go to the earlier entry.
/// Removing documents compacts in order, so forgetting leaves the very arrays a memory that never
/// saw them holds.
///
/// With a coarse quantizer (`useInvertedFile`) the f32 keys are kept grouped by list (an inverted
/// file: each entry under its nearest centre), and beyond `exactLimit` entries a query reads only
/// its `probes` nearest lists, in place: exact search reads every key, which at a million entries
/// costs more than the main brain's whole step. An entry's list follows from its key and the
/// shipped centres alone, so forgetting stays exact there too.
public final class TokenMemory {
    public let dimension: Int
    private(set) public var keys: [UInt16] = []
    private(set) public var values: [Int32] = []
    private(set) public var documents: [Int64] = []
    private(set) public var positions: [Int32] = []

    public var count: Int { values.count }

    /// Beyond this many entries (with a quantizer) the keys are grouped by list and a query reads
    /// only its nearest lists; at or below it they stay in one list in entry order, read whole.
    public var exactLimit = 262_144 { didSet { arrange() } }
    public var probes = 16
    public private(set) var quantizer: CoarseQuantizer?

    /// The keys for search: their f32 values (of the f16 bits) and squared norms, with their
    /// entries; one list in entry order, or grouped by inverted-file list beyond `exactLimit`.
    private struct List {
        var entries: [Int32] = []
        var rows: [Float] = []
        var norms: [Float] = []
    }
    private var lists = [List()]
    private var listed = false
    /// Each entry's inverted-file list (with a quantizer), kept whether grouped or not.
    private var listOfEntry: [Int32] = []

    public init(dimension: Int) {
        precondition(dimension > 0)
        self.dimension = dimension
    }

    /// Files every entry (and every later one) under its nearest centre; nil: exact search only.
    public func useInvertedFile(_ quantizer: CoarseQuantizer?) {
        precondition(quantizer.map { $0.dimension == dimension } ?? true, "the quantizer's keys are of another size")
        self.quantizer = quantizer
        listOfEntry = []
        refile()
    }

    /// The lists a search reads for one query: its `probes` nearest, or all of them when those
    /// hold half the entries or more (keys unlike the fitting text crowd a few lists).
    private func listsToRead(_ quantizer: CoarseQuantizer, _ query: UnsafePointer<Float>) -> [Int] {
        let probed = quantizer.nearestLists(query, probes: probes)
        return probed.reduce(0) { $0 + lists[$1].entries.count } < count / 2 ? probed : Array(lists.indices)
    }

    /// How many entries a search for this query reads (all of them while the keys are in one list).
    public func entriesRead(for query: [Float]) -> Int {
        precondition(query.count == dimension, "the query is of another size")
        guard let quantizer, listed else { return count }
        return query.withUnsafeBufferPointer { q in listsToRead(quantizer, q.baseAddress!).reduce(0) { $0 + lists[$1].entries.count } }
    }

    /// Groups the keys by list, or gathers them in one, when the entry count crosses the limit.
    private func arrange() {
        if (quantizer != nil && count > exactLimit) != listed { refile() }
    }

    private func refile() {
        listed = quantizer != nil && count > exactLimit
        lists = Array(repeating: List(), count: listed ? quantizer!.count : 1)
        file(0..<count)
    }

    /// Files entries already in `keys` (a range at the end, in order); each entry's list is
    /// computed once (`listOfEntry`) and kept through removals.
    private func file(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        let d = dimension
        let rows = keys[range.lowerBound * d..<range.upperBound * d].map(halfToFloat)
        if let quantizer, listOfEntry.count < range.upperBound {
            listOfEntry += quantizer.lists(of: Array(rows[((listOfEntry.count - range.lowerBound) * d)...]))
        }
        for (i, entry) in range.enumerated() {
            let l = listed ? Int(listOfEntry[entry]) : 0
            var norm: Float = 0
            for j in 0..<d { norm += rows[i * d + j] * rows[i * d + j] }
            lists[l].entries.append(Int32(entry))
            lists[l].rows += rows[i * d..<(i + 1) * d]
            lists[l].norms.append(norm)
        }
    }

    /// Appends entries: `keys` holds `values.count` rows of `dimension` floats.
    public func append(keys newKeys: [Float], values newValues: [Int32], document: Int64, positions newPositions: [Int32]) {
        precondition(newKeys.count == newValues.count * dimension && newPositions.count == newValues.count)
        let first = count
        keys += newKeys.map(floatToHalf)
        values += newValues
        positions += newPositions
        documents += Array(repeating: document, count: newValues.count)
        if (quantizer != nil && count > exactLimit) != listed { refile() } else { file(first..<count) }
    }

    /// Drops every entry of these documents, keeping the others in order. Returns how many went.
    @discardableResult
    public func remove(documents forgotten: Set<Int64>) -> Int {
        let keep = documents.indices.filter { !forgotten.contains(documents[$0]) }
        let removed = count - keep.count
        guard removed > 0 else { return 0 }
        var k: [UInt16] = []
        k.reserveCapacity(keep.count * dimension)
        for i in keep { k += keys[i * dimension..<(i + 1) * dimension] }
        keys = k
        values = keep.map { values[$0] }
        documents = keep.map { documents[$0] }
        positions = keep.map { positions[$0] }
        if quantizer != nil { listOfEntry = keep.map { listOfEntry[$0] } }
        refile()
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
    /// Up to this many queries are each searched as alone (a matrix-vector product per block,
    /// the block read from memory once for all of them), so a generation step's neighbours do
    /// not depend on the steps searched with it; more (scoring a text) go through sgemm.
    public static let queriesAlone = 16

    /// The `k` nearest entries of each query (`queries` holds rows of `dimension`), nearest
    /// first; ties go to the earlier entry. Exact up to `exactLimit` entries (or without a
    /// quantizer); beyond, from the `probes` lists nearest each query, unless those hold half the
    /// entries or more (keys unlike the text the centres were fitted on crowd into a few lists):
    /// then from all, which costs little more and is exact. Each list is read once for all the
    /// queries that read it.
    public func search(_ queries: [Float], k: Int) -> [[Neighbor]] {
        let m = queries.count / dimension
        precondition(queries.count == m * dimension && k > 0)
        guard count > 0, m > 0 else { return Array(repeating: [], count: m) }
        let queryNorms = squaredNorms(queries, dimension: dimension)
        var best = Array(repeating: Nearest(k: k), count: m)
        var dots = [Float](repeating: 0, count: m * Self.block)
        queries.withUnsafeBufferPointer { q in
            queryNorms.withUnsafeBufferPointer { qn in
                best.withUnsafeMutableBufferPointer { b in
                    dots.withUnsafeMutableBufferPointer { scratch in
                        func scan(_ l: Int, _ readers: [Int], alone: Bool) {
                            self.scan(l, q.baseAddress!, readers: readers, alone: alone, norms: qn.baseAddress!,
                                      into: b.baseAddress!, dots: scratch.baseAddress!)
                        }
                        if let quantizer, listed {
                            var readers: [Int: [Int]] = [:]
                            for i in 0..<m {
                                for l in listsToRead(quantizer, q.baseAddress! + i * dimension) { readers[l, default: []].append(i) }
                            }
                            for l in readers.keys.sorted() { scan(l, readers[l]!, alone: true) }
                        } else {
                            scan(0, Array(0..<m), alone: m <= Self.queriesAlone)
                        }
                    }
                }
            }
        }
        return best.map { nearest in
            nearest.found.map { Neighbor(distance: $0.distance, entry: $0.entry, value: values[$0.entry], document: documents[$0.entry],
                                         position: positions[$0.entry]) }
        }
    }

    /// The k best so far, nearest first; of equal distances the earlier entry wins, whatever
    /// the order they are offered in.
    struct Nearest {
        let k: Int
        var found: [(distance: Float, entry: Int)] = []

        /// The distance beyond which nothing can enter.
        var worst: Float { found.count == k ? found[k - 1].distance : .infinity }

        mutating func offer(_ d: Float, _ entry: Int) {
            if found.count == k {
                let last = found[k - 1]
                if d > last.distance || (d == last.distance && entry > last.entry) { return }
            }
            // Sorted insertion: k is small (tens).
            var at = found.count
            while at > 0 && (found[at - 1].distance > d || (found[at - 1].distance == d && found[at - 1].entry > entry)) { at -= 1 }
            found.insert((d, entry), at: at)
            if found.count > k { found.removeLast() }
        }
    }

    /// Offers every entry of list `l` to the best of each query in `readers` (indices into
    /// `queries`), a block of keys at a time (`dots` holds readers × block floats). `alone`: one
    /// matrix-vector product per query and block (it streams the keys, and a query's dots are
    /// the same whoever reads with it); else one sgemm of all readers (then 0..<m).
    private func scan(_ l: Int, _ queries: UnsafePointer<Float>, readers: [Int], alone: Bool, norms queryNorms: UnsafePointer<Float>,
                      into best: UnsafeMutablePointer<Nearest>, dots: UnsafeMutablePointer<Float>) {
        lists[l].rows.withUnsafeBufferPointer { rows in
            lists[l].norms.withUnsafeBufferPointer { norms in
                lists[l].entries.withUnsafeBufferPointer { entries in
                    var start = 0
                    while start < entries.count {
                        let n = min(Self.block, entries.count - start)
                        let keys = rows.baseAddress! + start * dimension
                        if alone {
                            for (r, qi) in readers.enumerated() {
                                matmul(dots + r * n, ldo: n, queries + qi * dimension, keys, rows: 1, outFeatures: n, inFeatures: dimension)
                            }
                        } else {
                            matmul(dots, ldo: n, queries, keys, rows: readers.count, outFeatures: n, inFeatures: dimension)
                        }
                        for (r, qi) in readers.enumerated() {
                            let qn = queryNorms[qi]
                            var nearest = best[qi]
                            // Most entries are farther than the k-th so far: one comparison each.
                            var worst = nearest.worst
                            for j in 0..<n {
                                let d = max(0, qn - 2 * dots[r * n + j] + norms[start + j])
                                if d > worst { continue }
                                nearest.offer(d, Int(entries[start + j]))
                                worst = nearest.worst
                            }
                            best[qi] = nearest
                        }
                        start += n
                    }
                }
            }
        }
    }
}
