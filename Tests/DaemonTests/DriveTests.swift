import ControlAPI
import Foundation
import XCTest

/// Real block devices: an ext4 image on a loop device, mounted read-only under a media root
/// the daemon watches, as the udev rule mounts a USB drive. Needs root (CI is root).
final class DriveTests: XCTestCase {
    func sh(_ command: String) throws -> String {
        let (code, out, err) = try runProgram("/bin/sh", ["-c", command])
        guard code == 0 else { throw NSError(domain: "sh", code: Int(code), userInfo: [NSLocalizedDescriptionKey: "\(command): \(err)"]) }
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func testPluggedDriveIsReadAbsentWhenRemovedAndOnlyChangesAreReadOnReturn() throws {
        guard getuid() == 0 else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("CI runs as root") }
            throw XCTSkip("loop devices and mounts need root")
        }
        let work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("drives-\(UUID().uuidString.prefix(8))")
        let content = work.appendingPathComponent("content"), media = work.appendingPathComponent("media")
        try FileManager.default.createDirectory(at: content.appendingPathComponent("policies"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: media, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        try Data("The loading dock opens at 6 a.m.\n".utf8).write(to: content.appendingPathComponent("dock.txt"))
        try Data("# Holidays\nThe office closes on 24 December.\n".utf8).write(to: content.appendingPathComponent("policies/holidays.md"))
        let image = work.appendingPathComponent("drive.img").path
        _ = try sh("truncate -s 16M \(image) && mkfs.ext4 -q -L SALES-2026 -d \(content.path) \(image)")
        let uuid = try sh("blkid -s UUID -o value \(image)")

        let daemon = try DaemonProcess(arguments: ["--media-root", media.path])
        try daemon.waitUntilReady()
        let mountPoint = media.appendingPathComponent("SALES-2026").path
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        var loop = try sh("losetup -f --show \(image)")
        var mounted = false
        defer {
            if mounted { _ = try? sh("umount \(mountPoint)") }
            _ = try? sh("losetup -d \(loop)")
        }
        _ = try sh("mount -o ro,nosuid,nodev,noexec,noload \(loop) \(mountPoint)")
        mounted = true

        // Plugged in: a drive source named by its filesystem, and its documents.
        let drive = try waitFor("the drive's documents") { () -> SourceBody? in
            let list = try JSONDecoder().decode(SourceList.self, from: try daemon.client.send("GET", "/v1/sources").body)
            return list.sources.first { $0.documents == 2 }
        }
        XCTAssertEqual(drive.kind, "drive")
        XCTAssertEqual(drive.uuid, uuid)
        XCTAssertEqual(drive.label, "SALES-2026")
        XCTAssertEqual(drive.state, "present")
        XCTAssertEqual(drive.mountPoint, mountPoint)
        let docs = try JSONDecoder().decode(DocumentList.self, from: try daemon.client.send("GET", "/v1/documents?source=\(drive.id)").body)
        XCTAssertEqual(Set(docs.documents.map(\.path)), ["dock.txt", "policies/holidays.md"])
        let status = try JSONDecoder().decode(StatusResponse.self, from: try daemon.client.send("GET", "/v1/status").body)
        XCTAssertEqual(status.intake?.drivesPresent, 1)

        // Pulled out: absent, and nothing is forgotten.
        _ = try sh("umount \(mountPoint) && losetup -d \(loop)")
        mounted = false
        _ = try waitFor("the drive to go absent") { () -> Bool? in
            let list = try JSONDecoder().decode(SourceList.self, from: try daemon.client.send("GET", "/v1/sources").body)
            return list.sources.first?.state == "absent" ? true : nil
        }
        XCTAssertEqual(try JSONDecoder().decode(DocumentList.self, from: try daemon.client.send("GET", "/v1/documents").body).total, 2)

        // Changed elsewhere, plugged in again: one new version, the rest unchanged.
        let scratch = work.appendingPathComponent("rw").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        _ = try sh("mount -o loop \(image) \(scratch) && echo 'The loading dock opens at 7 a.m.' > \(scratch)/dock.txt && umount \(scratch)")
        loop = try sh("losetup -f --show \(image)")
        _ = try sh("mount -o ro,nosuid,nodev,noexec,noload \(loop) \(mountPoint)")
        mounted = true
        let job = try waitFor("the second read to finish") { () -> JobBody? in
            let jobs = try JSONDecoder().decode(JobList.self, from: try daemon.client.send("GET", "/v1/jobs").body).jobs
            return jobs.count == 2 && jobs[0].isFinished ? jobs[0] : nil
        }
        XCTAssertEqual(job.state, "done")
        let all = try JSONDecoder().decode(DocumentList.self, from: try daemon.client.send("GET", "/v1/documents?all=1").body).documents
        XCTAssertEqual(all.filter { $0.path == "dock.txt" }.map(\.version).sorted(), [1, 2])
        XCTAssertEqual(all.first { $0.path == "dock.txt" && $0.version == 1 }?.state, "superseded")
        XCTAssertEqual(all.filter { $0.path == "policies/holidays.md" }.count, 1, "an unchanged file keeps its one version")
        let sources = try JSONDecoder().decode(SourceList.self, from: try daemon.client.send("GET", "/v1/sources").body).sources
        XCTAssertEqual(sources.map(\.state), ["present"], "the same drive, recognised by its UUID")
        XCTAssertEqual(daemon.terminate(), 0)
    }

    /// Pulled out in the middle of a scan: the drive goes absent, the job stops with a reason,
    /// nothing half-read is registered, and plugging it in again reads the rest, each file once.
    func testDrivePulledMidScanResumesWhenItReturns() throws {
        guard getuid() == 0 else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("CI runs as root") }
            throw XCTSkip("loop devices and mounts need root")
        }
        let work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("pulled-\(UUID().uuidString.prefix(8))")
        let content = work.appendingPathComponent("content"), media = work.appendingPathComponent("media")
        let files = 400
        for i in 0..<files {
            let url = content.appendingPathComponent("d\(i % 10)/memo-\(i).txt")
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data("Memo \(i): the forklift inspection is due in week \(i % 52 + 1).\n".utf8).write(to: url)
        }
        try FileManager.default.createDirectory(at: media, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let image = work.appendingPathComponent("drive.img").path
        _ = try sh("truncate -s 32M \(image) && mkfs.ext4 -q -L MEMOS -d \(content.path) \(image)")

        let daemon = try DaemonProcess(arguments: ["--media-root", media.path])
        try daemon.waitUntilReady()
        let mountPoint = media.appendingPathComponent("MEMOS").path
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        var loop = try sh("losetup -f --show \(image)")
        var mounted = false
        defer {
            if mounted { _ = try? sh("umount -l \(mountPoint)") }
            _ = try? sh("losetup -d \(loop)")
        }
        _ = try sh("mount -o ro,noload \(loop) \(mountPoint)")
        mounted = true
        func documents() throws -> DocumentList {
            try JSONDecoder().decode(DocumentList.self, from: try daemon.client.send("GET", "/v1/documents?all=1&limit=1000").body)
        }
        let partial = try waitFor("the first documents") { () -> Int? in
            let n = try documents().total
            return n >= 20 ? n : nil
        }
        // Pulled: the mount vanishes at once (lazy unmount), the device goes away.
        _ = try sh("umount -l \(mountPoint) && losetup -d \(loop)")
        mounted = false
        XCTAssertLessThan(partial, files, "the scan finished before the drive was pulled; add files")
        let stopped = try waitFor("the job to stop") { () -> JobBody? in
            let job = try JSONDecoder().decode(JobList.self, from: try daemon.client.send("GET", "/v1/jobs").body).jobs.first
            return job?.isFinished == true ? job : nil
        }
        XCTAssertEqual(stopped.state, "cancelled")
        XCTAssertTrue(stopped.error?.contains("drive was removed") ?? false, "\(stopped)")
        let sources = try JSONDecoder().decode(SourceList.self, from: try daemon.client.send("GET", "/v1/sources").body).sources
        XCTAssertEqual(sources.map(\.state), ["absent"])
        let afterPull = try documents()
        XCTAssertLessThan(afterPull.total, files)
        XCTAssertTrue(afterPull.documents.allSatisfy { ["extracted", "learned"].contains($0.state) }, "nothing half-registered")

        // Back: the rest is read, and every file is registered exactly once.
        loop = try sh("losetup -f --show \(image)")
        _ = try sh("mount -o ro,noload \(loop) \(mountPoint)")
        mounted = true
        _ = try waitFor("the second job", timeout: 60) { () -> Bool? in
            let jobs = try JSONDecoder().decode(JobList.self, from: try daemon.client.send("GET", "/v1/jobs").body).jobs
            return jobs.count == 2 && jobs[0].isFinished ? true : nil
        }
        let all = try documents()
        XCTAssertEqual(all.total, files)
        XCTAssertEqual(Set(all.documents.map(\.path)).count, files)
        XCTAssertTrue(all.documents.allSatisfy { $0.version == 1 })
        XCTAssertEqual(daemon.terminate(), 0)
    }
}
