#!/usr/bin/python3
"""netns-forward.py - TCP forwarder between network namespaces (one process, any number of ports).

  netns-forward.py READYFILE  LNS LHOST LPORT  CNS CHOST CPORT  [LNS LHOST LPORT CNS CHOST CPORT ...]

Listens on LHOST:LPORT inside netns LNS and forwards each connection to CHOST:CPORT inside netns CNS.
A namespace is a name under /run/netns, or "-" for the namespace this process started in (the host's).
A socket keeps the namespace it was created in, so one single-threaded process serves both sides; no
`ip netns exec` per connection and no bind-mounted handle on the host namespace. Half-closes are passed on.
A reset is passed on as a reset: what this process still holds for the other side is dropped, as a direct TCP
connection's kernel drops its unsent queue when the connection is reset (SO_LINGER 0) instead of delivering it
after an outage. READYFILE is written once every listener is bound. Numeric addresses only.
"""
import asyncio, ctypes, os, socket, struct, sys

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
HOME = os.open("/proc/self/ns/net", os.O_RDONLY)


def enter(ns):
    fd = HOME if ns == "-" else os.open("/run/netns/" + ns, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns " + ns)
    finally:
        if fd != HOME:
            os.close(fd)


def socket_in(ns):
    enter(ns)
    try:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    finally:
        enter("-")


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        reset(writer)


def reset(writer):
    try:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except (AttributeError, OSError):
        pass
    writer.transport.abort()


def handler(cns, chost, cport):
    async def handle(creader, cwriter):
        s = socket_in(cns)
        s.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(s, (chost, cport)), 10)
            sreader, swriter = await asyncio.open_connection(sock=s)
        except (OSError, asyncio.TimeoutError):
            s.close()
            cwriter.close()
            return
        await asyncio.gather(pipe(creader, swriter), pipe(sreader, cwriter))
        swriter.close()
        cwriter.close()

    return handle


async def main():
    ready, rest = sys.argv[1], sys.argv[2:]
    if not rest or len(rest) % 6:
        sys.exit(__doc__)
    servers = []
    for i in range(0, len(rest), 6):
        lns, lhost, lport, cns, chost, cport = rest[i : i + 6]
        ls = socket_in(lns)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((lhost, int(lport)))
        ls.listen(128)
        ls.setblocking(False)
        servers.append(await asyncio.start_server(handler(cns, chost, int(cport)), sock=ls))
    with open(ready + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(ready + ".tmp", ready)
    await asyncio.gather(*(s.serve_forever() for s in servers))


asyncio.run(main())
