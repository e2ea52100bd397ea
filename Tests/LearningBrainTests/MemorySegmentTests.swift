import Foundation
import Kernels
import LearningBrain
import XCTest

final class MemorySegmentTests: XCTestCase {
    var directory: String!

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "segments-\(UUID().uuidString)"
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    func memory(documents: [Int64], rows: Int = 300, d: Int = 16) -> TokenMemory {
        let m = TokenMemory(dimension: d)
        var state: UInt64 = 42
        for doc in documents {
            let keys = (0..<rows * d).map { _ -> Float in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 - 1
            }
            m.append(keys: keys, values: (0..<rows).map { Int32($0 % 97) + Int32(doc) }, document: doc, positions: (0..<rows).map(Int32.init))
        }
        return m
    }

    /// Written, read back and appended in document order: the same memory, answering the same.
    func testSegmentsRoundTripToAnIdenticalMemory() throws {
        let original = memory(documents: [3, 5, 9])
        let dir = try MemorySegmentDirectory(path: directory, keyspace: "test d=16")
        for doc: Int64 in [3, 5, 9] { try dir.write(original.segment(document: doc)) }
        XCTAssertEqual(try dir.documents(), [3, 5, 9])
        let restored = TokenMemory(dimension: 16)
        for doc in try dir.documents() { restored.append(try dir.read(doc)) }
        XCTAssertEqual(restored.keys, original.keys)
        XCTAssertEqual(restored.values, original.values)
        XCTAssertEqual(restored.documents, original.documents)
        XCTAssertEqual(restored.positions, original.positions)
        let queries = Array(original.keys.prefix(16 * 4).map(halfToFloat))
        XCTAssertEqual(restored.search(queries, k: 5), original.search(queries, k: 5))

        // Forgetting one deletes its file; what is read back then equals the memory without it.
        try dir.remove(5)
        try dir.remove(5)
        original.remove(documents: [5])
        let afterForgetting = TokenMemory(dimension: 16)
        for doc in try dir.documents() { afterForgetting.append(try dir.read(doc)) }
        XCTAssertEqual(afterForgetting.keys, original.keys)
        XCTAssertEqual(afterForgetting.documents, original.documents)
    }

    /// A damaged, truncated, foreign or half-written segment is refused with a reason, never loaded.
    func testDamagedSegmentsAreRefused() throws {
        let dir = try MemorySegmentDirectory(path: directory, keyspace: "test d=16")
        try dir.write(memory(documents: [1]).segment(document: 1))
        let file = directory + "/1.seg"
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: file))

        bytes[bytes.count / 2] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: file))
        XCTAssertThrowsError(try dir.read(1)) { XCTAssertTrue("\($0)".contains("checksum"), "\($0)") }

        bytes[bytes.count / 2] ^= 0x01
        try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: file))
        XCTAssertThrowsError(try dir.read(1)) { XCTAssertTrue("\($0)".contains("truncated"), "\($0)") }

        try bytes.write(to: URL(fileURLWithPath: file))
        XCTAssertNoThrow(try dir.read(1))
        let other = try MemorySegmentDirectory(path: directory, keyspace: "another model")
        XCTAssertThrowsError(try other.read(1)) { XCTAssertTrue("\($0)".contains("other keys"), "\($0)") }

        // Fitted keyspaces are named by their file's whole SHA-256: two fits that differ only in
        // the last bytes of their digest never share segments.
        let fitted = try MemorySegmentDirectory(path: directory, keyspace: String(repeating: "ab", count: 31) + "cd")
        try fitted.write(memory(documents: [4]).segment(document: 4))
        XCTAssertNoThrow(try fitted.read(4))
        let refit = try MemorySegmentDirectory(path: directory, keyspace: String(repeating: "ab", count: 31) + "ce")
        XCTAssertThrowsError(try refit.read(4)) { XCTAssertTrue("\($0)".contains("other keys"), "\($0)") }
        try fitted.remove(4)

        try Data("junk".utf8).write(to: URL(fileURLWithPath: directory + "/2.seg"))
        XCTAssertThrowsError(try dir.read(2)) { XCTAssertTrue("\($0)".contains("not a memory segment"), "\($0)") }

        // A crash mid-write leaves a temporary file: listing removes it.
        try Data("partial".utf8).write(to: URL(fileURLWithPath: directory + "/7.seg.tmp"))
        XCTAssertEqual(try dir.documents(), [1, 2])
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/7.seg.tmp"))
    }
}
