import Kernels
import XCTest
import LearningBrain

final class TokenMemoryTests: XCTestCase {
    func randomRows(_ n: Int, _ d: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<n * d).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
        }
    }

    /// BLAS search against a brute-force reference in f64 on the same (f16-rounded) keys, across
    /// several blocks.
    func testExactSearchMatchesBruteForce() {
        let d = 24, n = 9_000, k = 8
        let memory = TokenMemory(dimension: d)
        let keys = randomRows(n, d, seed: 1)
        memory.append(keys: keys, values: (0..<n).map { Int32($0 % 500) }, document: 7, positions: (0..<n).map(Int32.init))
        let queries = randomRows(5, d, seed: 2)
        let found = memory.search(queries, k: k)
        for q in 0..<5 {
            var reference: [(Double, Int)] = []
            for e in 0..<n {
                var s = 0.0
                for j in 0..<d {
                    let diff = Double(queries[q * d + j]) - Double(halfToFloat(memory.keys[e * d + j]))
                    s += diff * diff
                }
                reference.append((s, e))
            }
            reference.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            XCTAssertEqual(found[q].map(\.entry), reference.prefix(k).map(\.1), "query \(q)")
            for (a, b) in zip(found[q], reference.prefix(k)) { XCTAssertEqual(Double(a.distance), b.0, accuracy: 1e-3) }
            XCTAssertEqual(found[q].first?.value, Int32(reference[0].1 % 500))
            // Up to 16 queries (a decode step of several sessions) are each searched as alone:
            // the same neighbours to the bit, whoever is searched with it.
            XCTAssertEqual(memory.search(Array(queries[q * d..<(q + 1) * d]), k: k)[0], found[q], "query \(q) alone")
        }
        // More queries (a text scored) go through sgemm: the same entries, distances up to rounding.
        let many = randomRows(TokenMemory.queriesAlone + 4, d, seed: 2)
        for (q, row) in memory.search(many, k: k).enumerated() {
            let alone = memory.search(Array(many[q * d..<(q + 1) * d]), k: k)[0]
            XCTAssertEqual(alone.map(\.entry), row.map(\.entry), "query \(q) of many")
            for (a, b) in zip(alone, row) { XCTAssertEqual(a.distance, b.distance, accuracy: 1e-5 * b.distance) }
        }
    }

    /// Forgetting leaves exactly the memory that never saw the document.
    func testRemovingADocumentEqualsNeverAddingIt() {
        let d = 16
        let a = randomRows(300, d, seed: 3), b = randomRows(200, d, seed: 4), c = randomRows(100, d, seed: 5)
        func add(_ m: TokenMemory, _ rows: [Float], _ doc: Int64) {
            let n = rows.count / d
            m.append(keys: rows, values: (0..<n).map { Int32($0) }, document: doc, positions: (0..<n).map(Int32.init))
        }
        let taught = TokenMemory(dimension: d), never = TokenMemory(dimension: d)
        add(taught, a, 1); add(taught, b, 2); add(taught, c, 3)
        add(never, a, 1); add(never, c, 3)
        XCTAssertEqual(taught.remove(documents: [2]), 200)
        XCTAssertEqual(taught.keys, never.keys)
        XCTAssertEqual(taught.values, never.values)
        XCTAssertEqual(taught.documents, never.documents)
        XCTAssertEqual(taught.positions, never.positions)
        let q = randomRows(3, d, seed: 6)
        XCTAssertEqual(taught.search(q, k: 5), never.search(q, k: 5))
        XCTAssertFalse(taught.search(q, k: 50).joined().contains { $0.document == 2 })
    }

    func testEmptyMemoryAndSmallCounts() {
        let memory = TokenMemory(dimension: 4)
        XCTAssertEqual(memory.search([1, 0, 0, 0], k: 3), [[]])
        memory.append(keys: [1, 0, 0, 0, 0, 1, 0, 0], values: [10, 11], document: 1, positions: [0, 1])
        let r = memory.search([0.9, 0.1, 0, 0], k: 5)[0]
        XCTAssertEqual(r.map(\.value), [10, 11])
        XCTAssertEqual(r[0].distance, 0.02, accuracy: 1e-3)
    }

    /// Learning pieces keep every position that has a next token exactly once, within the piece
    /// length, each kept entry seeing at least the overlap before it (or the document's start).
    func testLearningPiecesCoverEveryTokenOnce() {
        for (length, overlap) in [(1024, 128), (512, 256), (8, 3)] {
            for count in [0, 1, 2, 3, 7, 8, 9, 10, 11, 12, 28, 29, 30, 200, 1000, 1024, 1025, 1026, 5000] {
                let pieces = KNNLanguageModel.pieces(count: count, length: length, overlap: overlap)
                XCTAssertEqual(pieces.flatMap { Array($0.kept) }, Array(0..<max(0, count - 1)), "\(count) tokens, \(length)/\(overlap)")
                for p in pieces {
                    XCTAssertLessThanOrEqual(p.run.count, length)
                    XCTAssertTrue(p.run.lowerBound == 0 || p.kept.lowerBound - p.run.lowerBound >= overlap)
                    XCTAssertLessThanOrEqual(p.kept.upperBound, p.run.upperBound)
                }
            }
        }
        XCTAssertEqual(KNNLanguageModel.pieces(count: 1000, length: 1024, overlap: 128).count, 1, "a short document is one prefill")
    }
}
