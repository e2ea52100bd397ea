import ControlAPI
import Foundation
import XCTest

/// `twinbrain models`: importing model files (refusing what the engine would not serve or the
/// machine cannot hold, resuming an interrupted copy), switching the serving model under load
/// without losing a request, removing, and a restart keeping the choice. Needs the default
/// model and Gemma 3 270M (the second real model).
final class ModelManagementTests: XCTestCase {
    static func gemmaPath() throws -> String {
        let candidates = [ProcessInfo.processInfo.environment["TWINBRAIN_GEMMA_MODEL"],
                          URL(fileURLWithPath: try Checkout.model()).deletingLastPathComponent()
                              .appendingPathComponent("gemma-3-270m-q4_k_m.gguf").path].compactMap { $0 }
        if let found = candidates.first(where: FileManager.default.fileExists) { return found }
        if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("Gemma 3 270M is missing under CI: `make test` fetches it (make gemma)") }
        throw XCTSkip("needs Gemma 3 270M: run `make gemma`")
    }

    func sha256(_ path: String) throws -> String {
        let (code, out, err) = try runProgram("/usr/bin/sha256sum", [path])
        XCTAssertEqual(code, 0, err)
        return String(out.prefix(64))
    }

    func models(_ daemon: DaemonProcess) throws -> InstalledModels {
        let reply = try daemon.client.send("GET", "/v1/admin/models")
        XCTAssertEqual(reply.status, 200, String(decoding: reply.body, as: UTF8.self))
        return try JSONDecoder().decode(InstalledModels.self, from: reply.body)
    }

    func served(_ daemon: DaemonProcess) throws -> String {
        try JSONDecoder().decode(ModelList.self, from: try daemon.client.send("GET", "/v1/models").body).data[0].id
    }

    func testImportUseRemoveAndARestartKeepsTheChoice() throws {
        let cli = try Checkout.binary("twinbrain"), gemma = try Self.gemmaPath(), smol = try Checkout.model()
        let gemmaID = URL(fileURLWithPath: gemma).deletingPathExtension().lastPathComponent
        let smolID = URL(fileURLWithPath: smol).deletingPathExtension().lastPathComponent

        // A box with little memory refuses a model before copying it, with the numbers.
        let small = try DaemonProcess(arguments: ["--debug-available-memory-mib", "200"])
        small.removesDirectory = false
        try small.waitUntilReady()
        func importing(_ daemon: DaemonProcess, _ path: String) throws -> (Int32, String, String) {
            try runProgram(cli, ["models", "import", path, "--socket", daemon.socket])
        }
        var (code, out, err) = try importing(small, gemma)
        XCTAssertEqual(code, 5, out)
        XCTAssertTrue(err.contains("cannot be served") && err.contains("200 MiB"), err)
        XCTAssertEqual(small.terminate(), 0)

        let daemon = try DaemonProcess(directory: small.directory)
        daemon.removesDirectory = false
        try daemon.waitUntilReady()
        let drive = daemon.directory.appendingPathComponent("drive")
        try FileManager.default.createDirectory(at: drive, withIntermediateDirectories: true)

        // Not a GGUF; a truncated model; a path that does not exist: refused, nothing copied.
        let junk = drive.appendingPathComponent("notes.gguf").path
        try Data("these are meeting notes, not a model".utf8).write(to: URL(fileURLWithPath: junk))
        (code, _, err) = try importing(daemon, junk)
        XCTAssertEqual(code, 5)
        XCTAssertTrue(err.contains("not a GGUF file"), err)
        let truncated = drive.appendingPathComponent("truncated.gguf").path
        try FileManager.default.contents(atPath: smol)!.prefix(40 << 20).write(to: URL(fileURLWithPath: truncated))
        (code, _, err) = try importing(daemon, truncated)
        XCTAssertEqual(code, 5)
        XCTAssertTrue(err.contains("truncated or damaged"), err)
        (code, _, err) = try importing(daemon, drive.appendingPathComponent("absent.gguf").path)
        XCTAssertEqual(code, 5)
        XCTAssertTrue(err.contains("No such file"), err)
        XCTAssertEqual(try models(daemon).models.map(\.id), [smolID])

        // A good one: copied, checked, its digest recorded.
        (code, out, err) = try importing(daemon, gemma)
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("imported \(gemmaID)") && out.contains("gemma3"), out)
        var listed = try models(daemon).models
        XCTAssertEqual(listed.map(\.id), [smolID, gemmaID])
        let imported = try XCTUnwrap(listed.last)
        XCTAssertEqual(imported.sha256, try sha256(gemma))
        XCTAssertEqual(imported.architecture, "gemma3")
        XCTAssertTrue(imported.imported && !imported.serving && imported.problem == nil)
        XCTAssertTrue(listed[0].serving)
        (code, _, err) = try importing(daemon, gemma)
        XCTAssertEqual(code, 5)
        XCTAssertTrue(err.contains("already installed"), err)

        // An interrupted copy (a pulled drive) resumes where it stopped.
        let copy = drive.appendingPathComponent("smol-copy.gguf").path
        try FileManager.default.copyItem(atPath: smol, toPath: copy)
        let part = daemon.directory.appendingPathComponent("state/models/smol-copy.gguf.part").path
        try FileManager.default.contents(atPath: smol)!.prefix(30 << 20).write(to: URL(fileURLWithPath: part))
        let attributes = try FileManager.default.attributesOfItem(atPath: copy)
        let origin: [String: Any] = ["source": copy, "size": (attributes[.size] as! NSNumber).intValue,
                                     "mtime": Int((attributes[.modificationDate] as! Date).timeIntervalSince1970)]
        try json(origin).write(to: URL(fileURLWithPath: part + ".source"))
        (code, out, err) = try runProgram(cli, ["models", "import", copy, "--json", "--socket", daemon.socket])
        XCTAssertEqual(code, 0, err)
        let statuses = try out.split(separator: "\n").map { try JSONDecoder().decode(ModelImportStatus.self, from: Data($0.utf8)) }
        XCTAssertEqual(statuses.last?.state, .done)
        XCTAssertEqual(statuses.last?.resumedFrom, 30 << 20, out)
        XCTAssertEqual(statuses.last?.installed?.sha256, try sha256(smol))

        // Switching under load: people keep asking; each request is answered (after a retry
        // when it arrived during the switch), none is lost.
        let box = ReplyCounter(), client = daemon.client
        let askers = (0..<2).map { i in
            Thread {
                while !box.stopped {
                    var attempts = 0
                    while true {
                        attempts += 1
                        let body = json(["prompt": "Asker \(i) says: the weather today is", "max_tokens": 12, "temperature": 0, "knowledge": false])
                        guard let reply = try? client.send("POST", "/v1/generate", body: body) else { box.record(failure: "no reply"); break }
                        if reply.status == 503, let retry = reply.headers["retry-after"], attempts < 60 {
                            box.record(retry: true)
                            Thread.sleep(forTimeInterval: min(Double(retry) ?? 1, 1))
                            continue
                        }
                        if reply.status == 200 { box.record(ok: true) } else { box.record(failure: "HTTP \(reply.status): \(String(decoding: reply.body, as: UTF8.self))") }
                        break
                    }
                }
            }
        }
        askers.forEach { $0.start() }
        _ = try waitFor("questions answered before the switch") { box.answered >= 2 ? true : nil }
        (code, out, err) = try runProgram(cli, ["models", "use", gemmaID, "--socket", daemon.socket])
        XCTAssertEqual(code, 0, err)
        let before = box.answered
        _ = try waitFor("questions answered by the new model") { box.answered >= before + 4 ? true : nil }
        box.stop()
        _ = try waitFor("the askers to stop", timeout: 60) { askers.allSatisfy(\.isFinished) ? true : nil }
        XCTAssertEqual(box.failures, [], "requests lost during the switch")
        XCTAssertEqual(try served(daemon), gemmaID)
        listed = try models(daemon).models
        XCTAssertEqual(listed.filter(\.serving).map(\.id), [gemmaID])

        // Never the serving model; never the configured one.
        (code, _, err) = try runProgram(cli, ["models", "remove", gemmaID, "--socket", daemon.socket])
        XCTAssertEqual(code, 5)
        XCTAssertTrue(err.contains("is serving"), err)
        (code, _, err) = try runProgram(cli, ["models", "remove", smolID, "--socket", daemon.socket])
        XCTAssertEqual(code, 5)
        XCTAssertTrue(err.contains("configured model"), err)
        (code, _, err) = try runProgram(cli, ["models", "use", "no-such-model", "--socket", daemon.socket])
        XCTAssertEqual(code, 5)
        XCTAssertTrue(err.contains("no model no-such-model"), err)

        // A restart keeps the choice.
        XCTAssertEqual(daemon.terminate(), 0)
        let restarted = try DaemonProcess(directory: daemon.directory)
        try restarted.waitUntilReady(timeout: 60)
        XCTAssertEqual(try served(restarted), gemmaID)
        let reply = try restarted.client.send("POST", "/v1/generate", body: json(["prompt": "The river", "max_tokens": 4, "knowledge": false]))
        XCTAssertEqual(reply.status, 200, String(decoding: reply.body, as: UTF8.self))

        // Back to the configured model; the imported ones can go.
        (code, _, err) = try runProgram(cli, ["models", "use", smolID, "--socket", restarted.socket])
        XCTAssertEqual(code, 0, err)
        for id in [gemmaID, "smol-copy"] {
            (code, _, err) = try runProgram(cli, ["models", "remove", id, "--socket", restarted.socket])
            XCTAssertEqual(code, 0, err)
        }
        XCTAssertEqual(try models(restarted).models.map(\.id), [smolID])
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemon.directory.appendingPathComponent("state/models/\(gemmaID).gguf.sha256").path))
        let audit = try JSONDecoder().decode(AuditList.self, from: try restarted.client.send("GET", "/v1/audit").body)
        XCTAssertEqual(audit.entries.map(\.action).filter { $0.hasPrefix("model-") },
                       ["model-remove", "model-remove", "model-use", "model-use", "model-import", "model-import"])
        XCTAssertEqual(restarted.terminate(), 0)
        try? FileManager.default.removeItem(at: daemon.directory)
    }
}

/// Outcomes of requests made from several threads.
final class ReplyCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var ok = 0, retries = 0, failed: [String] = [], stopping = false
    func stop() { lock.withLock { stopping = true } }
    var stopped: Bool { lock.withLock { stopping } }
    func record(ok: Bool) { lock.withLock { self.ok += 1 } }
    func record(retry: Bool) { lock.withLock { retries += 1 } }
    func record(failure: String) { lock.withLock { failed.append(failure) } }
    var answered: Int { lock.withLock { ok } }
    var failures: [String] { lock.withLock { failed } }
}

/// A model that comes without a fitted keyspace gets one: the daemon fits it on the calibration
/// text (a few of the shipped texts here, to keep the test short), then loads the model again and
/// its token memory learns what the box knows; a restart finds the fit and does not fit again.
/// Needs the default model.
final class KeyspaceFitTests: XCTestCase {
    func testAModelWithoutAFitIsFittedOnTheCalibrationTextAndItsMemoryLearns() throws {
        let scratch = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("twinbrain-fit-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let shipped = Checkout.root.appendingPathComponent("packaging/calibration")
        let calibration = scratch.appendingPathComponent("calibration")
        for (part, names) in [("memory", ["man-basename.txt", "man-seq.txt"]), ("related", ["man-nproc.txt", "man-base64.txt"]),
                              ("unrelated", ["BSD.txt"])] {
            let directory = calibration.appendingPathComponent(part)
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            for name in names {
                try FileManager.default.copyItem(at: shipped.appendingPathComponent(part).appendingPathComponent(name),
                                                 to: directory.appendingPathComponent(name))
            }
        }
        // The default model's file, away from the fit that ships beside it.
        let model = scratch.appendingPathComponent("smol.gguf").path
        try FileManager.default.copyItem(atPath: try Checkout.model(), toPath: model)
        let arguments = ["--model", model, "--calibration-dir", calibration.path]
        let daemon = try DaemonProcess(arguments: arguments)
        daemon.removesDirectory = false
        defer { try? FileManager.default.removeItem(at: daemon.directory) }
        try daemon.waitUntilReady()
        func learning(_ d: DaemonProcess) throws -> StatusResponse.Learning {
            try XCTUnwrap(JSONDecoder().decode(StatusResponse.self, from: try d.client.send("GET", "/v1/status").body).learning)
        }
        XCTAssertNil(try learning(daemon).memoryEntries, "no memory before the fit")
        let docs = daemon.directory.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        try Data("The coffee machine on floor 2 is maintained by Bogdan every Tuesday.\nThe canteen serves fish soup on Fridays.\n".utf8)
            .write(to: docs.appendingPathComponent("canteen.txt"))
        XCTAssertEqual(try daemon.client.send("POST", "/v1/ingest", body: json(["path": docs.path])).status, 202)
        let learned = try waitFor("the fit, then the document in the token memory", timeout: 180) { () -> StatusResponse.Learning? in
            let l = try learning(daemon)
            return l.memoryDocuments == 1 ? l : nil
        }
        XCTAssertGreaterThan(try XCTUnwrap(learned.memoryEntries), 10)
        XCTAssertNil(learned.keyspaceFit)
        XCTAssertTrue(daemon.logText.contains("fitted the token memory's keyspace"), daemon.logText)
        let fits = try FileManager.default.contentsOfDirectory(atPath: daemon.directory.appendingPathComponent("state/models").path)
        XCTAssertEqual(fits.filter { $0.hasSuffix(".keyspace.json") }.count, 1, "\(fits)")
        let listed = try JSONDecoder().decode(InstalledModels.self, from: try daemon.client.send("GET", "/v1/admin/models").body)
        XCTAssertEqual(listed.models.first { $0.serving }?.keyspaceFitted, true)
        XCTAssertEqual(daemon.terminate(), 0)

        let restarted = try DaemonProcess(arguments: arguments, directory: daemon.directory)
        try restarted.waitUntilReady()
        _ = try waitFor("the memory loaded from its segment") { try learning(restarted).memoryDocuments == 1 ? true : nil }
        XCTAssertNil(try learning(restarted).keyspaceFit)
        XCTAssertFalse(restarted.logText.contains("fitting the token memory's keyspace"), restarted.logText)

        // A model imported without a fit is fitted beside the serving one, which keeps answering.
        let gemma = scratch.appendingPathComponent("gemma-copy.gguf").path
        try FileManager.default.copyItem(atPath: try ModelManagementTests.gemmaPath(), toPath: gemma)
        let reply = try restarted.client.send("POST", "/v1/admin/models/import", body: json(["path": gemma]))
        XCTAssertEqual(reply.status, 202, String(decoding: reply.body, as: UTF8.self))
        let listedFit = try waitFor("the imported model's keyspace fitted", timeout: 240) { () -> Bool? in
            let models = try JSONDecoder().decode(InstalledModels.self, from: try restarted.client.send("GET", "/v1/admin/models").body)
            return models.models.first { $0.id == "gemma-copy" }?.keyspaceFitted == true ? true : nil
        }
        XCTAssertTrue(listedFit)
        let asked = try restarted.client.send("POST", "/v1/generate", body: json(["prompt": "The coffee machine", "max_tokens": 4]))
        XCTAssertEqual(asked.status, 200)
        XCTAssertTrue(restarted.logText.contains("fitting the token memory's keyspace for \(restarted.directory.path)/state/models/gemma-copy.gguf"),
                      restarted.logText)
        XCTAssertEqual(restarted.terminate(), 0)
    }
}
