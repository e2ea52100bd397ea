// twinbrain-extract: reads one file on stdin, writes its text (UTF-8, NFC) on stdout.
//
// The daemon runs it once per file and never parses customer files itself. Before touching the
// input the helper fences itself in: no new privileges, an address-space and CPU-time limit, no
// file writes, no core dumps, few descriptors. The daemon adds a wall-clock timeout (SIGKILL) and
// caps what it reads back. Exit status: 0 text on stdout; 2 unsupported; 3 malformed; 4 too
// large; 5 the input could not be read (a pulled drive); 1 usage; anything else (a signal) = the helper died on the file.
//
// Usage: twinbrain-extract --format FORMAT [--max-input BYTES] [--memory BYTES] [--cpu SECONDS] < FILE

import CIntake
import Extraction
import Foundation
#if canImport(Glibc)
import Glibc
#endif

func fail(_ status: Int32, _ message: String) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(status)
}

var format: String?
var maxInput = 256 << 20
var memory = 2 << 30
var cpuSeconds = 60
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { fail(1, "\(flag) needs a value") }
    switch flag {
    case "--format": format = value
    case "--max-input": maxInput = Int(value) ?? maxInput
    case "--memory": memory = Int(value) ?? memory
    case "--cpu": cpuSeconds = Int(value) ?? cpuSeconds
    default: fail(1, "unknown option \(flag); usage: twinbrain-extract --format FORMAT [--max-input B] [--memory B] [--cpu S] < FILE")
    }
}
guard let format else { fail(1, "--format is required (\(Set(TextExtractor.formats.values).sorted().joined(separator: ", ")))") }

func limit(_ resource: Int32, _ value: Int) {
    var r = rlimit(rlim_cur: rlim_t(value), rlim_max: rlim_t(value))
    if setrlimit(__rlimit_resource_t(UInt32(resource)), &r) != 0 { fail(1, "setrlimit(\(resource)) failed: errno \(errno)") }
}
if twinbrain_no_new_privs() != 0 { fail(1, "prctl(PR_SET_NO_NEW_PRIVS) failed: errno \(errno)") }
limit(Int32(RLIMIT_AS.rawValue), memory)
limit(Int32(RLIMIT_CPU.rawValue), cpuSeconds)
limit(Int32(RLIMIT_FSIZE.rawValue), 0)
limit(Int32(RLIMIT_CORE.rawValue), 0)
limit(Int32(RLIMIT_NOFILE.rawValue), 64)

// Read at most maxInput + 1 bytes: one more than allowed means the file is too large.
var input = Data()
var buffer = [UInt8](repeating: 0, count: 1 << 16)
while input.count <= maxInput {
    let n = read(0, &buffer, min(buffer.count, maxInput + 1 - input.count))
    if n < 0 { if errno == EINTR { continue }; fail(5, "unreadable: read error (errno \(errno)): the file or its drive is unreadable") }
    if n == 0 { break }
    input.append(contentsOf: buffer[0..<n])
}
if input.count > maxInput { fail(4, "too large: more than \(maxInput) bytes") }

do {
    let text = try TextExtractor.extract(input, format: format)
    FileHandle.standardOutput.write(Data(text.utf8))
} catch let e as ExtractionError {
    fail(e.exitCode, e.description)
} catch {
    fail(3, "malformed: \(error)")
}
