import CUdev
import Foundation
import Store
#if canImport(Glibc)
import Glibc
#endif

/// Notices drives arriving and leaving. Two signals, one thread:
/// - the mount table: /proc/self/mountinfo polled for POLLPRI, which the kernel raises on every
///   mount and unmount; only filesystems mounted under the media roots count (the udev rule
///   mounts USB filesystems read-only under /run/twinbrain/media/<label or uuid>);
/// - a libudev monitor on the `block` subsystem (udevd's events; when udevd does not answer, the
///   kernel's), so a pulled drive is noticed even before its mount goes away.
/// Each change calls `onChange` with the media mounts that appeared and disappeared.
public final class DriveWatcher: @unchecked Sendable {
    public let mediaRoots: [String]
    /// "udev", or "kernel (udevd is not running)" when udevd does not answer, or "none".
    public private(set) var eventSource = "none"
    private var onChange: @Sendable (_ added: [Mount], _ removed: [Mount]) -> Void = { _, _ in }
    private var known: Set<Mount> = []
    private var udev: OpaquePointer?
    private var monitor: OpaquePointer?
    private var stopPipe: [Int32] = [-1, -1]
    private var thread: Thread?

    public init(mediaRoots: [String]) {
        self.mediaRoots = mediaRoots
    }

    /// Reports the media mounts present now (as added), then watches.
    public func start(onChange: @escaping @Sendable (_ added: [Mount], _ removed: [Mount]) -> Void) {
        self.onChange = onChange
        udev = udev_new()
        let udevdRunning = FileManager.default.fileExists(atPath: "/run/udev/control")
        if let udev {
            monitor = udev_monitor_new_from_netlink(udev, udevdRunning ? "udev" : "kernel")
            if let monitor {
                udev_monitor_filter_add_match_subsystem_devtype(monitor, "block", nil)
                if udev_monitor_enable_receiving(monitor) == 0 {
                    eventSource = udevdRunning ? "udev" : "kernel (udevd is not running)"
                } else {
                    udev_monitor_unref(monitor)
                    self.monitor = nil
                }
            }
        }
        _ = pipe(&stopPipe)
        rescan()
        let t = Thread { [weak self] in self?.loop() }
        t.name = "twinbrain-drives"
        thread = t
        t.start()
    }

    public func stop() {
        if stopPipe[1] >= 0 { _ = write(stopPipe[1], "x", 1) }
    }

    deinit {
        if let monitor { udev_monitor_unref(monitor) }
        if let udev { udev_unref(udev) }
        for fd in stopPipe where fd >= 0 { close(fd) }
    }

    private func loop() {
        let mountinfo = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC)
        defer { if mountinfo >= 0 { close(mountinfo) } }
        let udevFD = monitor.map { udev_monitor_get_fd($0) } ?? -1
        while true {
            var fds = [pollfd(fd: stopPipe[0], events: Int16(POLLIN), revents: 0),
                       pollfd(fd: mountinfo, events: Int16(POLLPRI), revents: 0),
                       pollfd(fd: udevFD, events: Int16(POLLIN), revents: 0)]
            // A slow periodic rescan as a safety net (a missed event costs at most this long).
            let n = poll(&fds, nfds_t(fds.count), 30_000)
            if n < 0 && errno != EINTR { return }
            if fds[0].revents != 0 { return }
            if fds[2].revents != 0, let monitor {
                // Drain the events; what matters is what the mount table says afterwards.
                while let device = udev_monitor_receive_device(monitor) { udev_device_unref(device) }
                // The udev rule's systemd-mount happens just after the add event.
                usleep(200_000)
            }
            rescan()
        }
    }

    func rescan() {
        let now = Set(MountTable.media(MountTable.current(), roots: mediaRoots))
        let added = now.subtracting(known), removed = known.subtracting(now)
        known = now
        if !added.isEmpty || !removed.isEmpty {
            onChange(added.sorted { $0.mountPoint < $1.mountPoint }, removed.sorted { $0.mountPoint < $1.mountPoint })
        }
    }

    /// What identifies a mounted drive: its filesystem UUID and label from the udev database,
    /// else from blkid (root only), else its device number and mount point.
    public func identify(_ mount: Mount) -> SourceInfo {
        var properties: [String: String] = [:]
        if let udev, let device = udev_device_new_from_devnum(udev, CChar(UInt8(ascii: "b")), Self.device(mount.major, mount.minor)) {
            for key in ["ID_FS_UUID", "ID_FS_LABEL", "ID_FS_TYPE"] {
                if let v = udev_device_get_property_value(device, key) { properties[key] = String(cString: v) }
            }
            udev_device_unref(device)
        }
        if properties["ID_FS_UUID"] == nil { properties.merge(Self.blkid(mount.device)) { a, _ in a } }
        let uuid = properties["ID_FS_UUID"]
        return SourceInfo(key: uuid.map { "fs:" + $0 } ?? "dev:\(mount.majorMinor):\(mount.mountPoint)", kind: "drive", uuid: uuid,
                          label: properties["ID_FS_LABEL"] ?? URL(fileURLWithPath: mount.mountPoint).lastPathComponent,
                          fstype: properties["ID_FS_TYPE"] ?? mount.fstype, device: mount.device, mountPoint: mount.mountPoint)
    }

    /// glibc's makedev (a macro, so not visible from Swift).
    static func device(_ major: UInt32, _ minor: UInt32) -> dev_t {
        let (ma, mi) = (dev_t(major), dev_t(minor))
        return (ma & 0xFFFF_F000) << 32 | (ma & 0xFFF) << 8 | (mi & 0xFFFF_FF00) << 12 | (mi & 0xFF)
    }

    /// `blkid -o export DEVICE` → ID_FS_* keys (needs read access to the device).
    static func blkid(_ device: String) -> [String: String] {
        guard device.hasPrefix("/dev/"), FileManager.default.isExecutableFile(atPath: "/usr/sbin/blkid") else { return [:] }
        guard let child = try? ChildProcess.spawn("/usr/sbin/blkid", ["-o", "export", device], environment: [:], stdin: nil) else {
            return [:]
        }
        let text = String(decoding: readToEnd(child.stdout), as: UTF8.self)
        _ = child.wait(killingAt: Date().addingTimeInterval(10))
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let kv = line.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { continue }
            switch kv[0] {
            case "UUID": result["ID_FS_UUID"] = kv[1]
            case "LABEL": result["ID_FS_LABEL"] = kv[1]
            case "TYPE": result["ID_FS_TYPE"] = kv[1]
            default: break
            }
        }
        return result
    }
}
