import Foundation
import Kernels
import MainBrain

/// Squared L2 distances from rows to centres through one BLAS product: ‖x‖² − 2 x·c + ‖c‖²
/// (clamped at 0, which rounding can undershoot). `rows` holds `count` rows of `dimension`;
/// `centres` holds `centreNorms.count` rows. Returns `count` rows of `centreNorms.count` distances.
public func squaredDistances(_ rows: UnsafePointer<Float>, count: Int, centres: UnsafePointer<Float>,
                             centreNorms: [Float], dimension: Int) -> [Float] {
    let c = centreNorms.count
    var out = [Float](repeating: 0, count: count * c)
    guard count > 0, c > 0 else { return out }
    out.withUnsafeMutableBufferPointer { o in
        matmul(o.baseAddress!, rows, centres, rows: count, outFeatures: c, inFeatures: dimension)
        for r in 0..<count {
            var norm: Float = 0
            for j in 0..<dimension { norm += rows[r * dimension + j] * rows[r * dimension + j] }
            for j in 0..<c { o[r * c + j] = max(0, norm - 2 * o[r * c + j] + centreNorms[j]) }
        }
    }
    return out
}

public func squaredNorms(_ rows: [Float], dimension: Int) -> [Float] {
    (0..<rows.count / dimension).map { r in
        var s: Float = 0
        for j in 0..<dimension { s += rows[r * dimension + j] * rows[r * dimension + j] }
        return s
    }
}

/// The index of the nearest centre of each row (ties to the lower index).
public func nearestCentres(_ rows: [Float], centres: [Float], dimension: Int) -> [Int32] {
    let n = rows.count / dimension, c = centres.count / dimension
    precondition(rows.count == n * dimension && centres.count == c * dimension && c > 0)
    let norms = squaredNorms(centres, dimension: dimension)
    var out = [Int32](repeating: 0, count: n)
    let block = 4096   // rows per BLAS product: bounds the distance scratch
    rows.withUnsafeBufferPointer { x in
        centres.withUnsafeBufferPointer { cs in
            for start in stride(from: 0, to: n, by: block) {
                let m = min(block, n - start)
                let d = squaredDistances(x.baseAddress! + start * dimension, count: m, centres: cs.baseAddress!,
                                         centreNorms: norms, dimension: dimension)
                for r in 0..<m {
                    var best = 0
                    for j in 1..<c where d[r * c + j] < d[r * c + best] { best = j }
                    out[start + r] = Int32(best)
                }
            }
        }
    }
    return out
}

/// Lloyd's k-means on `rows` (each `dimension` floats), squared L2: k-means++ seeding from a
/// seeded generator (so a fit is reproducible), then `iterations` rounds of assigning every row to
/// its nearest centre and moving each centre to the mean of its rows. A centre left without rows
/// restarts at the row farthest from its own centre. Returns `clusters` rows of centres.
public func kMeans(_ rows: [Float], dimension: Int, clusters: Int, iterations: Int, seed: UInt64) -> [Float] {
    let n = rows.count / dimension
    precondition(rows.count == n * dimension && clusters > 0 && n >= clusters)
    var rng = SeededGenerator(seed: seed)
    func row(_ i: Int) -> ArraySlice<Float> { rows[i * dimension..<(i + 1) * dimension] }
    func distance(_ i: Int, _ centre: ArraySlice<Float>) -> Float {
        var s: Float = 0
        var j = centre.startIndex
        for x in row(i) { let t = x - centre[j]; s += t * t; j += 1 }
        return s
    }
    // k-means++: each new centre is a row drawn with probability proportional to its squared
    // distance from the nearest centre so far.
    var centres = [Float]()
    centres.reserveCapacity(clusters * dimension)
    centres += row(Int(rng.next() % UInt64(n)))
    var nearest = (0..<n).map { distance($0, centres[0..<dimension]) }
    while centres.count < clusters * dimension {
        let total = nearest.reduce(0, +)
        var pick = 0
        if total > 0 {
            var target = Float(Double(rng.next() >> 11) / Double(1 << 53)) * total
            while pick < n - 1 && target >= nearest[pick] { target -= nearest[pick]; pick += 1 }
        } else {
            pick = Int(rng.next() % UInt64(n))
        }
        let start = centres.count
        centres += row(pick)
        let added = centres[start..<start + dimension]
        for i in 0..<n { nearest[i] = min(nearest[i], distance(i, added)) }
    }
    for _ in 0..<iterations {
        let assignment = nearestCentres(rows, centres: centres, dimension: dimension)
        var sums = [Double](repeating: 0, count: clusters * dimension), counts = [Int](repeating: 0, count: clusters)
        for i in 0..<n {
            let c = Int(assignment[i])
            counts[c] += 1
            for j in 0..<dimension { sums[c * dimension + j] += Double(rows[i * dimension + j]) }
        }
        // Rows farthest from their centre first, for centres left empty (rare: computed only then).
        var spare = (counts.contains(0) ? (0..<n).map { i -> (Float, Int) in
            let c = Int(assignment[i])
            return (distance(i, centres[c * dimension..<(c + 1) * dimension]), i)
        }.sorted { $0.0 > $1.0 }.map(\.1) : []).makeIterator()
        for c in 0..<clusters {
            if counts[c] == 0 {
                let far = spare.next()!
                for j in 0..<dimension { centres[c * dimension + j] = rows[far * dimension + j] }
            } else {
                for j in 0..<dimension { centres[c * dimension + j] = Float(sums[c * dimension + j] / Double(counts[c])) }
            }
        }
    }
    return centres
}

/// The coarse quantizer of the token memory's inverted file: centres fitted by k-means on keys
/// of public text (`make gate`), never on customer data, so an entry's list depends on its key
/// alone and forgetting stays exact. An entry is filed under its nearest centre; a query looks
/// in the lists of its `probes` nearest centres.
public struct CoarseQuantizer: Sendable, Equatable {
    public let dimension: Int
    /// `count` rows of `dimension` floats.
    public let centres: [Float]
    let centreNorms: [Float]

    public var count: Int { centres.count / dimension }

    public init(dimension: Int, centres: [Float]) {
        precondition(dimension > 0 && !centres.isEmpty && centres.count % dimension == 0)
        self.dimension = dimension
        self.centres = centres
        centreNorms = squaredNorms(centres, dimension: dimension)
    }

    public static func fit(keys: [Float], dimension: Int, lists: Int, iterations: Int = 20, seed: UInt64 = 1) -> CoarseQuantizer {
        CoarseQuantizer(dimension: dimension, centres: kMeans(keys, dimension: dimension, clusters: lists,
                                                              iterations: iterations, seed: seed)).asShipped
    }

    /// The list of each key (rows of `dimension`).
    public func lists(of keys: [Float]) -> [Int32] { nearestCentres(keys, centres: centres, dimension: dimension) }

    /// The `probes` lists nearest to one query, nearest first.
    public func nearestLists(_ query: UnsafePointer<Float>, probes: Int) -> [Int] {
        let d = centres.withUnsafeBufferPointer {
            squaredDistances(query, count: 1, centres: $0.baseAddress!, centreNorms: centreNorms, dimension: dimension)
        }
        return Array(d.indices.sorted { d[$0] < d[$1] || (d[$0] == d[$1] && $0 < $1) }.prefix(probes))
    }

    /// As shipped in source: f16, base64.
    public var encoded: String { ShippedFloats.encode(centres) }

    public init?(dimension: Int, lists: Int, encoded: String) {
        guard let centres = ShippedFloats.decode(encoded, count: dimension * lists) else { return nil }
        self.init(dimension: dimension, centres: centres)
    }

    public var asShipped: CoarseQuantizer { CoarseQuantizer(dimension: dimension, lists: count, encoded: encoded)! }
}

/// Fitted numbers as they ship in generated source: f16, little-endian, base64 in lines of 76.
/// Decoding gives exactly the values in use, so anything fitted after them fits what ships.
enum ShippedFloats {
    static func encode(_ values: [Float]) -> String {
        var bytes = Data(capacity: values.count * 2)
        for x in values { withUnsafeBytes(of: floatToHalf(x).littleEndian) { bytes.append(contentsOf: $0) } }
        return bytes.base64EncodedString(options: [.lineLength76Characters, .endLineWithLineFeed])
    }

    static func decode(_ text: String, count: Int) -> [Float]? {
        guard let data = Data(base64Encoded: text, options: .ignoreUnknownCharacters), data.count == count * 2 else { return nil }
        let bytes = [UInt8](data)
        return (0..<count).map { halfToFloat(UInt16(bytes[2 * $0]) | UInt16(bytes[2 * $0 + 1]) << 8) }
    }
}
