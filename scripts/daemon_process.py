"""A real twinbraind for the scripts that measure or load it (bench_daemon.py, bench_batch.py,
soak.py): started on a temporary socket with a fake NOTIFY_SOCKET, returned once it sends READY=1;
and plain HTTP/1.1 requests over its Unix socket."""
import json, os, socket, subprocess

def start(daemon, model, directory, name="d", extra=()):
    """The process and its socket path, once READY=1 arrived (state under directory/name-state)."""
    sock_path, notify_path = os.path.join(directory, f"{name}.sock"), os.path.join(directory, f"{name}.notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(60)
    cmd = [daemon, "--socket", sock_path, "--state-dir", os.path.join(directory, f"{name}-state"), "--model", model,
           "--config", "/dev/null", *extra]
    p = subprocess.Popen(cmd, env=dict(os.environ, NOTIFY_SOCKET=notify_path), stderr=subprocess.DEVNULL)
    while b"READY=1" not in notify.recv(4096):
        pass
    notify.close()
    return p, sock_path

def send(sock_path, method, path, body=None):
    """The connected socket, the request sent; the caller reads the reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(120)
    s.connect(sock_path)
    data = json.dumps(body).encode() if body is not None else b""
    s.sendall(method.encode() + b" " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
              b"Content-Type: application/json\r\nContent-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    return s

def call(sock_path, method, path, body=None):
    """(status, body bytes) of a whole reply."""
    s, raw = send(sock_path, method, path, body), b""
    while chunk := s.recv(65536):
        raw += chunk
    s.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload

def get(sock_path, path):
    """A GET's JSON reply."""
    return json.loads(call(sock_path, "GET", path)[1])
