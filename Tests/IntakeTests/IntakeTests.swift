import Foundation
import XCTest
import ZIPFoundation
@preconcurrency import Intake
@preconcurrency import Store

/// Scanning hostile trees, the sandboxed extractor on every format, and ingest end to end.
/// Device nodes need root (CI is root); that case is skipped otherwise.
final class IntakeTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("intake-tests-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func write(_ relative: String, _ content: String) throws {
        let url = directory.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(content.utf8).write(to: url)
    }

    func scan(_ root: String, limits: SafeScanner.Limits = .init()) throws -> (files: [String], skipped: [String: String]) {
        var files: [String] = [], skipped: [String: String] = [:]
        try SafeScanner(root: root, limits: limits).scan(file: { files.append($0.path) }, skipped: { skipped[$0.path] = $0.reason })
        return (files, skipped)
    }

    // MARK: Scanning

    func testScannerReadsOnlyRegularFilesAndSaysWhyItSkipsTheRest() throws {
        try write("a.txt", "alpha")
        try write("sub/b.md", "beta")
        try write("line\nbreak.txt", "newline in the name")
        let outside = directory.deletingLastPathComponent().appendingPathComponent("outside-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: outside) }
        try Data("secret".utf8).write(to: outside.appendingPathComponent("secret.txt"))
        try FileManager.default.createSymbolicLink(atPath: directory.appendingPathComponent("link-to-file").path, withDestinationPath: "a.txt")
        try FileManager.default.createSymbolicLink(atPath: directory.appendingPathComponent("escape").path, withDestinationPath: outside.path)
        XCTAssertEqual(mkfifo(directory.appendingPathComponent("pipe").path, 0o644), 0)
        // A name that is not UTF-8 (Latin-1 "café").
        let latin1 = Array(directory.path.utf8) + Array("/caf".utf8) + [0xE9] + Array(".txt".utf8)
        let cPath = latin1.map { CChar(bitPattern: $0) } + [0]
        let created = Glibc.open(cPath, O_CREAT | O_WRONLY, 0o644)
        XCTAssertGreaterThanOrEqual(created, 0)
        _ = Glibc.write(created, "bonjour", 7)
        close(created)
        // Deep nesting beyond the cap.
        try write("d1/d2/d3/d4/deep.txt", "too deep")
        // A sparse 1 GiB file: over the size cap, skipped without being read.
        let big = directory.appendingPathComponent("huge.log")
        XCTAssertTrue(FileManager.default.createFile(atPath: big.path, contents: nil))
        XCTAssertEqual(truncate(big.path, 1 << 30), 0)
        if getuid() == 0 {
            XCTAssertEqual(mknod(directory.appendingPathComponent("null-device").path, S_IFCHR | 0o644, dev_t(0x103) /* makedev(1, 3): /dev/null */), 0)
        }

        var limits = SafeScanner.Limits()
        limits.maxDepth = 3
        let (files, skipped) = try scan(directory.path, limits: limits)
        XCTAssertEqual(Set(files), ["a.txt", "sub/b.md", "line\nbreak.txt", "caf\\xE9.txt"])
        XCTAssertEqual(skipped["link-to-file"], "symbolic link (never followed)")
        XCTAssertEqual(skipped["escape"], "symbolic link (never followed)")
        XCTAssertEqual(skipped["pipe"], "FIFO (not a regular file)")
        XCTAssertEqual(skipped["d1/d2/d3/d4"], "deeper than 3 directories")
        XCTAssertEqual(skipped["huge.log"], "larger than \(limits.maxFileBytes) bytes")
        if getuid() == 0 { XCTAssertEqual(skipped["null-device"], "device node (not a regular file)") }
        XCTAssertFalse(files.contains { $0.contains("secret") })

        // File-count cap.
        limits.maxFiles = 2
        let capped = try scan(directory.path, limits: limits)
        XCTAssertEqual(capped.files.count, 2)
        XCTAssertTrue(capped.skipped.values.contains("over the limit of 2 files per scan"))
    }

    func testScannerRefusesASymlinkedRootAndASwappedFile() throws {
        try write("real/a.txt", "alpha")
        let link = directory.appendingPathComponent("link")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: directory.appendingPathComponent("real").path)
        XCTAssertThrowsError(try SafeScanner(root: link.path)) { XCTAssertTrue("\($0)".contains("symbolic link"), "\($0)") }
        XCTAssertThrowsError(try SafeScanner(root: "relative/path"))

        // Found as a file, replaced by a symlink before it is opened: the open refuses it.
        let scanner = try SafeScanner(root: directory.appendingPathComponent("real").path)
        var found: [SafeScanner.File] = []
        try scanner.scan(file: { found.append($0) }, skipped: { _ in })
        let target = directory.appendingPathComponent("real/a.txt")
        try FileManager.default.removeItem(at: target)
        try FileManager.default.createSymbolicLink(atPath: target.path, withDestinationPath: "/etc/passwd")
        XCTAssertThrowsError(try scanner.open(found[0])) { XCTAssertTrue("\($0)".contains("symbolic link"), "\($0)") }
    }

    // MARK: Extraction (in the helper process)

    func extract(_ data: Data, format: String, limits: ExtractorRunner.Limits = .init()) throws -> Result<String, ExtractorRunner.Failure> {
        let url = directory.appendingPathComponent("input-\(UUID().uuidString)")
        try data.write(to: url)
        let fd = open(url.path, O_RDONLY)
        defer { close(fd) }
        return try ExtractorRunner(limits: limits).extract(fd: fd, format: format, maxInput: 64 << 20)
    }

    func iconv(_ text: String, to encoding: String) throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/iconv")
        p.arguments = ["-f", "UTF-8", "-t", encoding]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        try p.run()
        try input.fileHandleForWriting.write(contentsOf: Data(text.utf8))
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return data
    }

    func testPlainTextInEveryEncodingOfficesProduce() throws {
        XCTAssertEqual(try extract(Data("plain\r\ntext".utf8), format: "text").get(), "plain\ntext")
        // NFC: e + combining acute becomes é.
        XCTAssertEqual(try extract(Data("cafe\u{301}".utf8), format: "markdown").get(), "café")
        XCTAssertEqual(try extract(Data([0xFF, 0xFE]) + Data("hi".utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }), format: "text").get(), "hi")
        let chinese = "季度销售报告：华东地区的收入增长了百分之十二。我们的客户满意度也有明显提高。"
        XCTAssertEqual(try extract(try iconv(chinese, to: "GB18030"), format: "text").get(), chinese)
        let traditional = "年度會議紀錄：我們的產品在台灣市場的銷售表現很好，客戶對服務也非常滿意。"
        XCTAssertEqual(try extract(try iconv(traditional, to: "BIG5"), format: "text").get(), traditional)
        guard case .failure(.unsupported) = try extract(Data([0x00, 0x01, 0x02, 0xFF, 0x00]), format: "text") else {
            return XCTFail("binary data should be unsupported")
        }
    }

    func testHTMLAndXML() throws {
        let html = """
            <html><head><title>Plan</title><style>p { color: red }</style><script>alert("x")</script></head>
            <body><h1>Q3 &amp; Q4</h1><p>Revenue   grew&nbsp;12%.</p><ul><li>North</li><li>South</li></ul>
            <table><tr><td>a</td><td>b</td></tr></table><!-- hidden --></body></html>
            """
        let text = try extract(Data(html.utf8), format: "html").get()
        XCTAssertEqual(text, "Plan\nQ3 & Q4\nRevenue grew 12%.\n- North\n- South\na\tb")
        XCTAssertEqual(try extract(Data("<a><b>one</b><c>two &#x4E2D;</c></a>".utf8), format: "xml").get(), "one\ntwo 中")
    }

    func zip(_ members: [String: String], compressed: Bool = true) throws -> Data {
        let archive = try Archive(data: Data(), accessMode: .create)
        for (path, content) in members.sorted(by: { $0.key < $1.key }) {
            let data = Data(content.utf8)
            try archive.addEntry(with: path, type: .file, uncompressedSize: Int64(data.count),
                                 compressionMethod: compressed ? .deflate : .none) { position, size in
                data.subdata(in: Int(position)..<Int(position) + size)
            }
        }
        return archive.data!
    }

    func testOfficeFormats() throws {
        let docx = try zip(["word/document.xml": """
            <w:document><w:body><w:p><w:r><w:t>Quarterly</w:t></w:r><w:r><w:t xml:space="preserve"> report</w:t></w:r></w:p>\
            <w:p><w:r><w:t>Line</w:t><w:tab/><w:t>two</w:t></w:r></w:p><w:p><w:r><w:instrText>PAGE</w:instrText></w:r></w:p></w:body></w:document>
            """])
        XCTAssertEqual(try extract(docx, format: "docx").get(), "Quarterly report\nLine\ttwo")

        let pptx = try zip([
            "ppt/slides/slide1.xml": "<p:sld><a:p><a:r><a:t>First slide</a:t></a:r></a:p></p:sld>",
            "ppt/slides/slide10.xml": "<p:sld><a:p><a:r><a:t>Tenth</a:t></a:r></a:p></p:sld>",
            "ppt/slides/slide2.xml": "<p:sld><a:p><a:r><a:t>Second</a:t></a:r></a:p></p:sld>",
        ])
        XCTAssertEqual(try extract(pptx, format: "pptx").get(), "First slide\n\nSecond\n\nTenth")

        let xlsx = try zip([
            "xl/sharedStrings.xml": "<sst><si><t>Region</t></si><si><t>Sales</t></si><si><r><t>No</t></r><r><t>rth</t></r></si></sst>",
            "xl/worksheets/sheet1.xml": """
                <worksheet><sheetData><row><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row>\
                <row><c t="s"><v>2</v></c><c><v>42.5</v></c><c t="inlineStr"><is><t>note</t></is></c></row></sheetData></worksheet>
                """,
        ])
        XCTAssertEqual(try extract(xlsx, format: "xlsx").get(), "Region\tSales\nNorth\t42.5\tnote")

        let odt = try zip(["content.xml": """
            <office:document-content><office:meta><dc:title>ignored</dc:title></office:meta><office:body><office:text>\
            <text:h>Heading</text:h><text:p>Some<text:s text:c="2"/>text<text:tab/>tab</text:p></office:text></office:body></office:document-content>
            """])
        XCTAssertEqual(try extract(odt, format: "odt").get(), "Heading\nSome text\ttab", "runs of spaces collapse")

        guard case .failure(.malformed(let m)) = try extract(Data("not a zip".utf8), format: "docx") else { return XCTFail() }
        XCTAssertTrue(m.contains("ZIP"), m)
        guard case .failure(.malformed(let missing)) = try extract(try zip(["other.xml": "<a/>"]), format: "docx") else { return XCTFail() }
        XCTAssertTrue(missing.contains("word/document.xml"), missing)
    }

    /// 200 MiB of spaces in a few hundred KiB: stopped by the ratio and size caps as it inflates.
    func testZipBombFailsCleanly() throws {
        let archive = try Archive(data: Data(), accessMode: .create)
        let size = 200 << 20
        let chunk = Data(repeating: 0x20, count: 1 << 20)
        try archive.addEntry(with: "word/document.xml", type: .file, uncompressedSize: Int64(size), compressionMethod: .deflate) { position, length in
            chunk.prefix(length)
        }
        let bomb = archive.data!
        XCTAssertLessThan(bomb.count, 1 << 20)
        guard case .failure(.tooLarge(let m)) = try extract(bomb, format: "docx") else { return XCTFail("a zip bomb must be refused") }
        XCTAssertTrue(m.contains("inflates") || m.contains("ratio"), m)
    }

    func testPDF() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/pdftotext") else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("pdftotext missing under CI (make deps installs poppler-utils)") }
            throw XCTSkip("needs pdftotext (apt-get install poppler-utils)")
        }
        XCTAssertEqual(try extract(Self.minimalPDF("Hello from the box"), format: "pdf").get().trimmingCharacters(in: .whitespacesAndNewlines),
                       "Hello from the box")
        // Pages stay apart (a form feed between them), so passages and evidence can name the page.
        let twoPages = try extract(Self.minimalPDF("Travel policy", "Flights need approval"), format: "pdf").get()
        XCTAssertEqual(twoPages.trimmingCharacters(in: .whitespacesAndNewlines).components(separatedBy: "\u{0C}")
                           .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }, ["Travel policy", "Flights need approval"])
        guard case .failure(.malformed(let m)) = try extract(Data("%PDF-1.4\ngarbage without objects".utf8), format: "pdf") else {
            return XCTFail("a broken PDF must be malformed")
        }
        XCTAssertTrue(m.contains("pdftotext"), m)
        guard case .failure(.malformed) = try extract(Data("plain text".utf8), format: "pdf") else { return XCTFail() }
    }

    /// A PDF with one line of Helvetica text per page and a correct cross-reference table.
    static func minimalPDF(_ pages: String...) -> Data {
        var objects = [
            "<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [\(pages.indices.map { "\(4 + 2 * $0) 0 R" }.joined(separator: " "))] /Count \(pages.count) >>",
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
        for (i, text) in pages.enumerated() {
            let stream = "BT /F1 18 Tf 72 720 Td (\(text)) Tj ET"
            objects.append("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents \(5 + 2 * i) 0 R /Resources << /Font << /F1 3 0 R >> >> >>")
            objects.append("<< /Length \(stream.utf8.count) >>\nstream\n\(stream)\nendstream")
        }
        var pdf = "%PDF-1.4\n"
        var offsets: [Int] = []
        for (i, o) in objects.enumerated() {
            offsets.append(pdf.utf8.count)
            pdf += "\(i + 1) 0 obj\n\(o)\nendobj\n"
        }
        let xref = pdf.utf8.count
        pdf += "xref\n0 \(objects.count + 1)\n0000000000 65535 f \n"
        for o in offsets { pdf += String(format: "%010d 00000 n \n", o) }
        pdf += "trailer\n<< /Size \(objects.count + 1) /Root 1 0 R >>\nstartxref\n\(xref)\n%%EOF\n"
        return Data(pdf.utf8)
    }

    func testRunnerCapsOutputAndKillsAHungOrCrashingHelper() throws {
        // A single 4 MiB line against a 1 MiB output cap.
        var small = ExtractorRunner.Limits()
        small.maxOutputBytes = 1 << 20
        guard case .failure(.tooLarge) = try extract(Data(repeating: 0x61, count: 4 << 20), format: "text", limits: small) else {
            return XCTFail("output over the cap must fail")
        }
        // Stand-in helpers: one hangs, one dies of a signal; the runner must come back either way.
        let hang = directory.appendingPathComponent("hang.sh"), crash = directory.appendingPathComponent("crash.sh")
        try "#!/bin/sh\nexec sleep 30\n".write(to: hang, atomically: true, encoding: .utf8)
        try "#!/bin/sh\nkill -SEGV $$\n".write(to: crash, atomically: true, encoding: .utf8)
        chmod(hang.path, 0o755)
        chmod(crash.path, 0o755)
        let input = directory.appendingPathComponent("in.txt")
        try Data("x".utf8).write(to: input)
        let fd = open(input.path, O_RDONLY)
        defer { close(fd) }
        var quick = ExtractorRunner.Limits()
        quick.timeout = 1
        let start = Date()
        XCTAssertEqual(try ExtractorRunner(helper: hang.path, limits: quick).extract(fd: fd, format: "text", maxInput: 10), .failure(.timedOut(1)))
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        guard case .failure(.crashed(let m)) = try ExtractorRunner(helper: crash.path).extract(fd: fd, format: "text", maxInput: 10) else {
            return XCTFail()
        }
        XCTAssertTrue(m.contains("signal 11"), m)
    }

    // MARK: Ingest

    func testIngestRegistersVersionsAndResumesWithoutDuplicates() throws {
        let docs = directory.appendingPathComponent("docs")
        try write("docs/plan.md", "# Plan\nShip the box.")
        try write("docs/notes/a.txt", "same content")
        try write("docs/notes/b.txt", "same content")
        try write("docs/broken.docx", "not a zip")
        try write("docs/program.exe", "MZ")
        try write("docs/README", "Read me first.")
        try Data([0x7F, 0x45, 0x4C, 0x46, 0x00, 0x01]).write(to: directory.appendingPathComponent("docs/binary-blob"))
        let store = try Store(path: directory.appendingPathComponent("state.sqlite").path)
        let ingester = Ingester(store: store, extractor: try ExtractorRunner())

        let job = try store.createJob(kind: "ingest", target: docs.path)
        let first = try ingester.run(job: job, path: docs.path)
        XCTAssertEqual([first.added, first.failed, first.skipped, first.unchanged], [4, 1, 2, 0])
        XCTAssertEqual(try store.job(id: job.id)?.state, .done)
        XCTAssertEqual(try store.job(id: job.id)?.done, 7)
        XCTAssertEqual(try store.skips(job: job.id), [Skip(path: "binary-blob", reason: "no file-name extension and not text"),
                                                     Skip(path: "program.exe", reason: "not a document format the box reads")])
        let all = try store.documents().page
        let a = try XCTUnwrap(all.first { $0.path == "notes/a.txt" }), b = try XCTUnwrap(all.first { $0.path == "notes/b.txt" })
        XCTAssertEqual(a.textSha256, b.textSha256, "identical content is stored once")
        XCTAssertEqual(all.first { $0.path == "broken.docx" }?.state, .failed)

        // Again: nothing new (a resumed or repeated job reads only what changed).
        let again = try ingester.run(job: try store.createJob(kind: "ingest", target: docs.path), path: docs.path)
        XCTAssertEqual([again.added, again.updated, again.unchanged], [0, 0, 5], "the failed file is retried and fails the same way")
        XCTAssertEqual(try store.documents().total, 5)

        // A changed file: a new version, the old one superseded and due to be forgotten.
        try write("docs/plan.md", "# Plan\nShip the box in March.")
        let changed = try ingester.run(job: try store.createJob(kind: "ingest", target: docs.path), path: docs.path)
        XCTAssertEqual(changed.updated, 1)
        XCTAssertEqual(changed.toForget, [try XCTUnwrap(all.first { $0.path == "plan.md" }).id])
        let plan = try XCTUnwrap(try store.currentVersion(source: a.sourceId, path: "plan.md"))
        XCTAssertEqual(plan.version, 2)
        XCTAssertEqual(try store.text(sha256: plan.textSha256!), "# Plan\nShip the box in March.")

        // One file by path: its directory is the source's root, nothing else is read.
        let single = try ingester.run(job: try store.createJob(kind: "ingest", target: docs.appendingPathComponent("plan.md").path),
                                      path: docs.appendingPathComponent("plan.md").path)
        XCTAssertEqual(single.added, 1)
        XCTAssertEqual(try store.sources().count, 2)
    }
}
