import Kernels
import MainBrain
import XCTest
import LearningBrain

final class InvertedFileTests: XCTestCase {
    /// Rows around `clusters` well-separated centres (a stand-in for keys of real text, which
    /// cluster by context), each row a centre plus small noise.
    func clustered(_ n: Int, _ d: Int, clusters: Int, seed: UInt64) -> (rows: [Float], centres: [Float]) {
        var rng = SeededGenerator(seed: seed)
        func uniform() -> Float { Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 - 1 }
        let centres = (0..<clusters * d).map { _ in 4 * uniform() }
        var rows: [Float] = []
        for i in 0..<n {
            let c = Int(rng.next() % UInt64(clusters))
            _ = i
            rows += (0..<d).map { centres[c * d + $0] + 0.3 * uniform() }
        }
        return (rows, centres)
    }

    /// k-means finds well-separated clusters: every fitted centre sits on a true one, each true
    /// one gets a fitted centre, and a fit is reproducible from its seed.
    func testKMeansRecoversSeparatedClusters() {
        let d = 8, k = 12
        let (rows, truth) = clustered(3_000, d, clusters: k, seed: 1)
        let fitted = kMeans(rows, dimension: d, clusters: k, iterations: 15, seed: 3)
        XCTAssertEqual(fitted, kMeans(rows, dimension: d, clusters: k, iterations: 15, seed: 3))
        let nearestTrue = nearestCentres(fitted, centres: truth, dimension: d)
        XCTAssertEqual(Set(nearestTrue).count, k, "each true cluster has its own fitted centre")
        for c in 0..<k {
            let t = Int(nearestTrue[c])
            let distance = (0..<d).reduce(Float(0)) { $0 + pow(fitted[c * d + $1] - truth[t * d + $1], 2) }
            XCTAssertLessThan(distance, 0.05, "centre \(c)")
        }
        // Assignment agrees with a brute-force nearest centre.
        let assigned = nearestCentres(rows, centres: fitted, dimension: d)
        for r in Swift.stride(from: 0, to: 3_000, by: 97) {
            let best = (0..<k).min { a, b in
                (0..<d).reduce(Float(0)) { $0 + pow(rows[r * d + $1] - fitted[a * d + $1], 2) }
                    < (0..<d).reduce(Float(0)) { $0 + pow(rows[r * d + $1] - fitted[b * d + $1], 2) }
            }!
            XCTAssertEqual(Int(assigned[r]), best, "row \(r)")
        }
    }

    /// Above the exact limit a search reads only the nearest lists: with every list probed it
    /// finds what exact search finds (the same entries at the same distances, up to the rounding
    /// of another BLAS path); with a few it still finds the true neighbours of clustered keys.
    func testListSearchAgreesWithExactSearch() {
        let d = 16, n = 20_000, k = 8
        let (rows, _) = clustered(n, d, clusters: 40, seed: 5)
        let quantizer = CoarseQuantizer.fit(keys: rows, dimension: d, lists: 32, iterations: 10, seed: 2)
        let memory = TokenMemory(dimension: d)
        memory.append(keys: Array(rows[0..<(n / 2) * d]), values: (0..<n / 2).map { Int32($0 % 300) }, document: 1,
                      positions: (0..<n / 2).map(Int32.init))
        memory.useInvertedFile(quantizer)   // files what is there, then what comes
        memory.append(keys: Array(rows[(n / 2) * d..<n * d]), values: (0..<n / 2).map { Int32($0 % 300) }, document: 2,
                      positions: (0..<n / 2).map(Int32.init))
        let (queries, _) = clustered(20, d, clusters: 40, seed: 5)   // the same centres, other noise
        let exact = memory.search(queries, k: k)
        memory.exactLimit = 0
        memory.probes = quantizer.count
        for (all, truth) in zip(memory.search(queries, k: k), exact) {
            XCTAssertEqual(Set(all.map(\.entry)), Set(truth.map(\.entry)))
            for (a, b) in zip(all, truth) { XCTAssertEqual(a.distance, b.distance, accuracy: 1e-4) }
        }
        memory.probes = 4
        let approximate = memory.search(queries, k: k)
        let hits = zip(exact, approximate).reduce(0) { $0 + Set($1.0.map(\.entry)).intersection($1.1.map(\.entry)).count }
        XCTAssertGreaterThanOrEqual(Double(hits) / Double(20 * k), 0.95)
        // Several queries (a decode step of several sessions) read each list once for all of
        // them, and each finds exactly what it finds alone.
        for q in 0..<4 {
            XCTAssertEqual(memory.search(Array(queries[q * d..<(q + 1) * d]), k: k)[0], approximate[q], "query \(q) alone")
        }
        let read = memory.entriesRead(for: Array(queries[0..<d]))
        XCTAssertGreaterThan(read, 0)
        XCTAssertLessThan(read, n / 4, "4 of 32 lists")
        memory.exactLimit = n
        XCTAssertEqual(memory.search(queries, k: k), exact, "at or below the limit the search stays exact")
        XCTAssertEqual(memory.entriesRead(for: Array(queries[0..<d])), n)
    }

    /// Forgetting with an inverted file leaves the lists a memory that never saw the document has.
    func testForgettingKeepsListsExact() {
        let d = 8
        let (rows, _) = clustered(3_000, d, clusters: 10, seed: 9)
        let quantizer = CoarseQuantizer.fit(keys: rows, dimension: d, lists: 16, iterations: 8, seed: 4)
        func add(_ m: TokenMemory, _ part: Range<Int>, _ doc: Int64) {
            m.append(keys: Array(rows[part.lowerBound * d..<part.upperBound * d]), values: part.map { Int32($0) }, document: doc,
                     positions: part.map(Int32.init))
        }
        let taught = TokenMemory(dimension: d), never = TokenMemory(dimension: d)
        for m in [taught, never] { m.useInvertedFile(quantizer); m.exactLimit = 0; m.probes = 3 }
        add(taught, 0..<1_000, 1); add(taught, 1_000..<2_000, 2); add(taught, 2_000..<3_000, 3)
        add(never, 0..<1_000, 1); add(never, 2_000..<3_000, 3)
        taught.remove(documents: [2])
        let (queries, _) = clustered(30, d, clusters: 10, seed: 10)
        XCTAssertEqual(taught.search(queries, k: 10), never.search(queries, k: 10))
    }

    /// Centres ship as f16 text; decoding gives the values in use, and damage is refused.
    func testShippedCentresRoundTrip() {
        let (rows, _) = clustered(500, 6, clusters: 5, seed: 11)
        let q = CoarseQuantizer.fit(keys: rows, dimension: 6, lists: 5, iterations: 5)
        XCTAssertEqual(CoarseQuantizer(dimension: 6, lists: 5, encoded: q.encoded), q)
        XCTAssertNil(CoarseQuantizer(dimension: 6, lists: 6, encoded: q.encoded))
        XCTAssertNil(CoarseQuantizer(dimension: 6, lists: 5, encoded: "not base64 at all!"))
    }

    /// Keys crowded into a few lists (unlike the text the centres were fitted on) are searched in
    /// place, exactly, rather than gathered from lists that hold most of them.
    func testCrowdedListsFallBackToExactSearch() {
        let d = 4
        let quantizer = CoarseQuantizer(dimension: d, centres: [0, 0, 0, 0, 100, 100, 100, 100])
        let (rows, _) = clustered(5_000, d, clusters: 3, seed: 12)   // all nearer the first centre
        let memory = TokenMemory(dimension: d)
        memory.append(keys: rows, values: (0..<5_000).map { Int32($0) }, document: 1, positions: (0..<5_000).map(Int32.init))
        let (queries, _) = clustered(10, d, clusters: 3, seed: 13)
        let exact = queries.indices.filter { $0 % d == 0 }.map { memory.search(Array(queries[$0..<$0 + d]), k: 6)[0] }
        memory.useInvertedFile(quantizer)
        memory.exactLimit = 0
        memory.probes = 1
        XCTAssertEqual(memory.search(queries, k: 6), exact)
        XCTAssertEqual(memory.entriesRead(for: Array(queries[0..<d])), 5_000)
    }
}
