import Foundation
import Intake
import XCTest

final class MountTableTests: XCTestCase {
    /// A mount table longer than one read of /proc/self/mountinfo (the kernel returns whole lines,
    /// a few KB per read) is read to its end: the drives mounted last are the ones that matter.
    func testLongMountTableIsReadToTheEnd() throws {
        guard getuid() == 0 else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("CI runs as root") }
            throw XCTSkip("needs root (mounts tmpfs filesystems)")
        }
        let root = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("mounts-\(UUID().uuidString.prefix(8))").path
        let count = 80
        var mounted: [String] = []
        defer {
            for m in mounted.reversed() { _ = umount(m) }
            try? FileManager.default.removeItem(atPath: root)
        }
        for i in 0..<count {
            let point = "\(root)/drive-with-a-long-descriptive-name-\(i)"
            try FileManager.default.createDirectory(atPath: point, withIntermediateDirectories: true)
            XCTAssertEqual(mount("tmpfs", point, "tmpfs", UInt(MS_RDONLY), "size=64k"), 0, String(cString: strerror(errno)))
            mounted.append(point)
        }
        let table = MountTable.current()
        XCTAssertGreaterThan(table.count * 100, 4096, "the table is longer than one read")
        let media = MountTable.media(table, roots: [root])
        XCTAssertEqual(media.map(\.mountPoint).sorted(), mounted.sorted())
        XCTAssertTrue(media.allSatisfy { $0.isReadOnly && $0.fstype == "tmpfs" })
    }
}
