import ControlAPI
import Foundation
import XCTest

enum AuditUser {
    static var current: String? { getpwuid(getuid()).map { String(cString: $0.pointee.pw_name) } }
}

/// The intake API and CLI against a real daemon: ingest as a job with streamed progress,
/// documents and sources, forgetting, access, bad requests, and kill -9 in the middle of an
/// ingest followed by a restart that resumes without duplicates.
final class IntakeAPITests: XCTestCase {
    func makeTree(files: Int, in root: URL) throws {
        for i in 0..<files {
            let url = root.appendingPathComponent("dir\(i % 7)/note-\(i).md")
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data("# Note \(i)\nThe warehouse in hall \(i) opens at \(i % 12 + 6) o'clock.\n".utf8).write(to: url)
        }
    }

    func waitForJob(_ client: SocketClient, _ id: Int64, timeout: TimeInterval = 120) throws -> JobBody {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let job = try JSONDecoder().decode(JobBody.self, from: try client.send("GET", "/v1/jobs/\(id)").body)
            if job.isFinished { return job }
            usleep(100_000)
        }
        throw XCTSkip("job \(id) did not finish in \(timeout) s")
    }

    func testIngestListForgetThroughAPIAndCLI() throws {
        let daemon = try DaemonProcess()
        try daemon.waitUntilReady()
        let docs = daemon.directory.appendingPathComponent("docs")
        try makeTree(files: 5, in: docs)
        try Data("not a zip".utf8).write(to: docs.appendingPathComponent("broken.docx"))
        try FileManager.default.createSymbolicLink(atPath: docs.appendingPathComponent("passwd.txt").path, withDestinationPath: "/etc/passwd")

        // The CLI: a job with progress, then what it skipped.
        let cli = try Checkout.binary("twinbrain")
        let (code, out, err) = try runProgram(cli, ["ingest", docs.path, "--socket", daemon.socket])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("done, 6/6 files") && out.contains("passwd.txt: symbolic link (never followed)"), out)

        let list = try JSONDecoder().decode(DocumentList.self, from: try daemon.client.send("GET", "/v1/documents?limit=3").body)
        XCTAssertEqual(list.total, 6)
        XCTAssertEqual(list.documents.count, 3)
        let failed = try JSONDecoder().decode(DocumentList.self, from: try daemon.client.send("GET", "/v1/documents?state=failed").body)
        XCTAssertEqual(failed.documents.map(\.path), ["broken.docx"])
        XCTAssertTrue(failed.documents[0].error?.contains("ZIP") ?? false)
        let first = try XCTUnwrap(list.documents.first { $0.format == "markdown" })
        let withText = try JSONDecoder().decode(DocumentBody.self, from: try daemon.client.send("GET", "/v1/documents/\(first.id)?include=text").body)
        XCTAssertTrue(withText.text?.contains("warehouse") ?? false)
        let sources = try JSONDecoder().decode(SourceList.self, from: try daemon.client.send("GET", "/v1/sources").body)
        XCTAssertEqual(sources.sources.map(\.documents), [6])

        // Forget one document, then the whole source.
        let forgot = try JSONDecoder().decode(ForgetResponse.self, from: try daemon.client.send("DELETE", "/v1/documents/\(first.id)").body)
        XCTAssertEqual(forgot.forgotten, [first.id])
        let gone = try JSONDecoder().decode(DocumentBody.self, from: try daemon.client.send("GET", "/v1/documents/\(first.id)?include=text").body)
        XCTAssertEqual(gone.state, "forgotten")
        XCTAssertNil(gone.text, "forgotten text is deleted")
        let (forgetCode, forgetOut, _) = try runProgram(cli, ["forget", "--source", String(sources.sources[0].id), "--socket", daemon.socket])
        XCTAssertEqual(forgetCode, 0)
        XCTAssertTrue(forgetOut.contains("forgot 5 document versions"), forgetOut)
        let audit = try JSONDecoder().decode(AuditList.self, from: try daemon.client.send("GET", "/v1/audit").body)
        XCTAssertEqual(audit.entries.map(\.action), ["forget-source", "forget-document", "ingest"])

        // Bad requests get clear errors and change nothing.
        XCTAssertEqual(try daemon.client.send("POST", "/v1/ingest", body: json(["path": "relative/dir"])).status, 400)
        XCTAssertEqual(try daemon.client.send("POST", "/v1/ingest", body: json(["path": "/no/such/dir"])).status, 400)
        XCTAssertEqual(try daemon.client.send("POST", "/v1/ingest", body: json(["file": "/tmp"])).status, 400)
        XCTAssertEqual(try daemon.client.send("GET", "/v1/documents/abc").status, 400)
        XCTAssertEqual(try daemon.client.send("GET", "/v1/documents/999999").status, 404)
        XCTAssertEqual(try daemon.client.send("GET", "/v1/documents?state=eaten").status, 400)
        XCTAssertEqual(try daemon.client.send("DELETE", "/v1/sources/999999").status, 404)
        XCTAssertEqual(try daemon.client.send("GET", "/v1/jobs/999999/events").status, 404)

        // A user who is not an admin may read but not ingest or forget.
        if getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") {
            chmod(daemon.directory.path, 0o755)
            chmod(daemon.socket, 0o666)
            let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups", cli]
            let (readCode, _, readErr) = try runProgram("/usr/bin/setpriv", asNobody + ["docs", "--socket", daemon.socket])
            XCTAssertEqual(readCode, 4, "nobody is in no twinbrain group: \(readErr)")
        }
        XCTAssertEqual(daemon.terminate(), 0)
    }

    /// kill -9 while an ingest runs; the restarted daemon resumes the job: every file registered
    /// exactly once.
    func testKillDuringIngestResumesWithoutDuplicates() throws {
        let daemon = try DaemonProcess()
        daemon.removesDirectory = false
        defer { try? FileManager.default.removeItem(at: daemon.directory) }
        try daemon.waitUntilReady()
        let docs = daemon.directory.appendingPathComponent("many")
        let files = 300
        try makeTree(files: files, in: docs)
        let job = try JSONDecoder().decode(JobBody.self, from: try daemon.client.send("POST", "/v1/ingest", body: json(["path": docs.path])).body)
        // Wait until part of the work is done, then pull the plug.
        let deadline = Date().addingTimeInterval(60)
        var progress = 0
        while Date() < deadline {
            let j = try JSONDecoder().decode(JobBody.self, from: try daemon.client.send("GET", "/v1/jobs/\(job.id)").body)
            progress = try JSONDecoder().decode(DocumentList.self, from: try daemon.client.send("GET", "/v1/documents?limit=1").body).total
            if progress >= 20 || j.isFinished { break }
            usleep(20_000)
        }
        // People are asking when the plug is pulled: four answers generated together.
        let client = daemon.client
        for i in 0..<4 {
            DispatchQueue.global().async { _ = try? client.send("POST", "/v1/generate", body: json(["prompt": "Story \(i):", "max_tokens": 3000])) }
        }
        _ = try waitFor("the answers being generated") { () -> Bool? in
            let queue = try JSONDecoder().decode(StatusResponse.self, from: try client.send("GET", "/v1/status").body).queue
            return (queue.slotsInUse ?? 0) >= 2 ? true : nil
        }
        daemon.kill9()
        XCTAssertLessThan(progress, files, "the ingest finished before the kill; make the tree bigger")

        let restarted = try DaemonProcess(directory: daemon.directory)
        try restarted.waitUntilReady()
        let done = try waitForJob(restarted.client, job.id)
        XCTAssertEqual(done.state, "done")
        let all = try JSONDecoder().decode(DocumentList.self, from: try restarted.client.send("GET", "/v1/documents?all=1&limit=1000").body)
        XCTAssertEqual(all.total, files, "every file exactly once")
        XCTAssertEqual(Set(all.documents.map(\.path)).count, files)
        XCTAssertTrue(all.documents.allSatisfy { ["extracted", "learned"].contains($0.state) && $0.version == 1 })
        XCTAssertTrue(restarted.logText.contains("resuming ingest job \(job.id)"), restarted.logText)
        // Learning ran alongside, killed too: every document learned once (each note is one passage).
        let learning = try waitFor("every document learned", timeout: 120) { () -> StatusResponse.Learning? in
            let l = try JSONDecoder().decode(StatusResponse.self, from: try restarted.client.send("GET", "/v1/status").body).learning
            return l?.documentsLearned == files ? l : nil
        }
        XCTAssertEqual(learning.passages, files, "no passage lost or learned twice")
        // And the token memory: every document once, in RAM and on disk.
        _ = try waitFor("every document in the token memory", timeout: 120) { () -> Bool? in
            let l = try JSONDecoder().decode(StatusResponse.self, from: try restarted.client.send("GET", "/v1/status").body).learning
            return l?.memoryDocuments == files ? true : nil
        }
        let segments = try FileManager.default.contentsOfDirectory(atPath: daemon.directory.appendingPathComponent("state/memory").path)
        XCTAssertEqual(segments.filter { $0.hasSuffix(".seg") }.count, files)
        // And the box answers several at once again.
        let statuses = ResultBox(), again = restarted.client
        DispatchQueue.concurrentPerform(iterations: 4) { i in
            let reply = try? again.send("POST", "/v1/generate", body: json(["prompt": "Note \(i) says", "max_tokens": 8]))
            statuses.add(reply?.status ?? -1, retryAfter: nil)
        }
        XCTAssertEqual(statuses.statuses, [200, 200, 200, 200])
        XCTAssertEqual(restarted.terminate(), 0)
    }
}
