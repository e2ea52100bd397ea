import CIntake
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A helper program started with posix_spawn, its stdout and stderr on pipes, waited for with
/// waitpid. Not Foundation's `Process`: its termination monitoring rests on CoreFoundation's run
/// loop and a socket pair made on first use, and under the daemon's unit that setup failed now and
/// then ("Could not create wakeup socket pair for CFSocket"), leaving `waitUntilExit` waiting
/// forever and the ingest job stuck (seen in the nspawn integration test).
struct ChildProcess {
    let pid: pid_t
    /// Read ends of the child's stdout and stderr (owned by the caller once spawned).
    let stdout: Int32
    let stderr: Int32

    struct SpawnError: Error, CustomStringConvertible {
        let description: String
    }

    /// Starts `path` with `arguments`; `stdin` (nil: /dev/null) becomes its standard input. No
    /// other descriptor of ours reaches the child.
    static func spawn(_ path: String, _ arguments: [String], environment: [String: String], stdin: Int32?) throws -> ChildProcess {
        var outPipe: [Int32] = [-1, -1], errPipe: [Int32] = [-1, -1]
        guard pipe(&outPipe) == 0 else { throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))") }
        guard pipe(&errPipe) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            throw SpawnError(description: "pipe: \(String(cString: strerror(errno)))")
        }
        // pipe2 needs _GNU_SOURCE, which Swift's Glibc does not define: close-on-exec afterwards.
        for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let input = stdin ?? open("/dev/null", O_RDONLY | O_CLOEXEC)
        defer {
            close(outPipe[1]); close(errPipe[1])
            if stdin == nil, input >= 0 { close(input) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 clears close-on-exec on the copies 0, 1 and 2.
        posix_spawn_file_actions_adddup2(&actions, input, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        // And nothing else: descriptors opened elsewhere without O_CLOEXEC must not reach a
        // sandboxed helper (it lowers its descriptor limit, and then cannot spawn with them open).
        twinbrain_spawn_close_from(&actions, 3)

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let r = posix_spawn(&pid, path, &actions, nil, argv, envp)
        guard r == 0 else {
            close(outPipe[0]); close(errPipe[0])
            throw SpawnError(description: "cannot start \(path): \(String(cString: strerror(r)))")
        }
        return ChildProcess(pid: pid, stdout: outPipe[0], stderr: errPipe[0])
    }

    enum Termination: Equatable {
        case exited(Int32)
        case signalled(Int32)
    }

    /// Waits for the child to end (killing it once `deadline` passes, if given) and closes our
    /// pipe ends. `killed` says whether the deadline did it.
    func wait(killingAt deadline: Date? = nil) -> (termination: Termination, killed: Bool) {
        defer { close(stdout); close(stderr) }
        var status: Int32 = 0, killed = false
        while true {
            let r = waitpid(pid, &status, deadline == nil || killed ? 0 : WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { break }
            if r == 0, let deadline, !killed {
                if Date() >= deadline { kill(); killed = true } else { usleep(5_000) }
            }
        }
        // The wait(2) status macros, which Swift does not import.
        let signal = status & 0x7f
        return (signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal), killed)
    }

    func kill() { _ = Glibc.kill(pid, SIGKILL) }
}

/// Everything a descriptor gives until end of file, by read(2) (proc files report a size of 0, so
/// readers that trust the size stop early; pipes end when the writer closes).
func readToEnd(_ fd: Int32) -> [UInt8] {
    var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { break }
        bytes += chunk[0..<n]
    }
    return bytes
}
