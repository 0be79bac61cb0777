"""The fan-out anchor: nginx + nchan (Debian's libnginx-mod-nchan), 1 worker, on a loopback port of its own."""
from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.procs import NCHAN_MODULE, Process, children, free_port

CONFIG = """
load_module {module};
worker_processes 1;
worker_rlimit_nofile 20000;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections 19500; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /pub {{ nchan_publisher; nchan_channel_id board; nchan_message_buffer_length 5; }}
        location = /sub {{ nchan_subscriber eventsource; nchan_channel_id board;
                           nchan_eventsource_ping_interval 15; nchan_subscriber_first_message newest; }}
        location = /healthz {{ return 200 "ok"; }}
    }}
}}
"""


@contextlib.contextmanager
def nchan(workdir: Path) -> Iterator[Process]:
    """nginx with our own config file (never the system service); yields its one worker's process."""
    directory = workdir / "nginx"
    directory.mkdir()
    port = free_port()
    config = directory / "nginx.conf"
    config.write_text(CONFIG.format(module=NCHAN_MODULE, dir=directory, port=port))
    with (directory / "stdout.log").open("wb") as output:
        master = subprocess.Popen(["nginx", "-c", str(config), "-p", str(directory)], stdout=output,
                                  stderr=subprocess.STDOUT)
    try:
        worker = _worker(master, port, directory)
        yield Process(worker, port)  # the worker's pid is what serves (and what we measure)
    finally:
        master.terminate()
        master.wait(20)


def _worker(master: subprocess.Popen[bytes], port: int, directory: Path) -> subprocess.Popen[bytes]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise RuntimeError(f"nginx exited: {(directory / 'error.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                pids = children(master.pid)
                if pids:
                    return _Pid(pids[0])  # type: ignore[return-value]
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("nginx did not start")


class _Pid:
    """Just enough of a Popen for Process: the worker is nginx's child, not ours."""

    def __init__(self, pid: int) -> None:
        self.pid = pid


def publish(port: int, body: bytes) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/pub", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()
