#!/usr/bin/python3
"""wire.py - a userspace link for kernels without sch_netem (this one): delay, jitter, rate, loss, queue limit.

  wire.py NSA IFA NSB IFB PARAMS.json READYFILE

Creates TAP IFA in netns NSA and TAP IFB in netns NSB (named under /run/netns) and forwards Ethernet frames
between them. PARAMS.json is re-read on SIGHUP; all keys optional:
  {"delay_ms": 100, "jitter_ms": 0, "rate_kbit": 2000, "loss": 0.01, "limit": 1000, "down": false}
"down" silently drops every frame (a blackhole; carrier stays up). Exiting removes both TAPs.
"""
import ctypes, fcntl, heapq, json, os, random, select, signal, struct, sys, time

TUNSETIFF, IFF_TAP, IFF_NO_PI, CLONE_NEWNET = 0x400454CA, 0x0002, 0x1000, 0x40000000
libc = ctypes.CDLL(None, use_errno=True)


def setns_fd(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def open_tap(ns, name):
    fd = os.open("/run/netns/" + ns, os.O_RDONLY)
    setns_fd(fd)
    os.close(fd)
    tap = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(tap, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return tap


nsa, ifa, nsb, ifb, pfile, ready = sys.argv[1:7]
home = os.open("/proc/self/ns/net", os.O_RDONLY)
fa, fb = open_tap(nsa, ifa), open_tap(nsb, ifb)
setns_fd(home)

P = {}


def load(*_):
    global P
    try:
        with open(pfile) as f:
            P = json.load(f)
    except (FileNotFoundError, ValueError):
        P = {}


load()
signal.signal(signal.SIGHUP, load)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

# per source fd: destination, heap of (deliver_at, seq, frame), time the serializer is busy until
dirs = {fa: {"dst": fb, "q": [], "busy": 0.0}, fb: {"dst": fa, "q": [], "busy": 0.0}}
seq = 0
with open(ready + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(ready + ".tmp", ready)

while True:
    nxt = min((d["q"][0][0] for d in dirs.values() if d["q"]), default=None)
    timeout = None if nxt is None else max(0.0, nxt - time.monotonic())
    try:
        r, _, _ = select.select([fa, fb], [], [], timeout)
    except InterruptedError:
        continue
    now = time.monotonic()
    for fd in r:
        d = dirs[fd]
        for _ in range(64):
            try:
                frame = os.read(fd, 65536)
            except OSError:
                break
            if P.get("down") or random.random() < P.get("loss", 0.0) or len(d["q"]) >= P.get("limit", 1000):
                continue
            rate = P.get("rate_kbit", 0) * 1000.0
            start = max(now, d["busy"])
            d["busy"] = start + (len(frame) * 8 / rate if rate else 0.0)
            j = P.get("jitter_ms", 0)
            at = d["busy"] + (P.get("delay_ms", 0) + (random.uniform(-j, j) if j else 0)) / 1000.0
            seq += 1
            heapq.heappush(d["q"], (at, seq, frame))
    now = time.monotonic()
    for d in dirs.values():
        q = d["q"]
        while q and q[0][0] <= now:
            _, _, frame = heapq.heappop(q)
            try:
                os.write(d["dst"], frame)
            except OSError:  # EIO while the TAP is administratively down = outage
                pass
