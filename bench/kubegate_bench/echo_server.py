"""The floor of benchmark 1: a bare gRPC unary service with the exchanger's server settings
(sync server, a ThreadPoolExecutor of the same size, the same receive cap, the same TLS
certificate) whose handler returns a fixed payload the size of a real exchange response.

    python -m kubegate_bench.echo_server --cert C --key K --workers 16 --max-receive 65536 \
        --response-bytes N

Prints `gRPC: 127.0.0.1:PORT` (like `kubegate serve`) and serves until SIGTERM. It imports
grpc only, so its RSS is the floor of a Python gRPC server too.
"""

from __future__ import annotations

import argparse
import signal
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

SERVICE = "kubegate.bench.Echo"
METHOD = f"/{SERVICE}/Echo"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--max-receive", type=int, required=True)
    parser.add_argument("--response-bytes", type=int, default=1024)
    args = parser.parse_args()
    payload: bytes = b"k" * int(args.response_bytes)

    def echo(request: bytes, context: Any) -> bytes:
        return payload

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)})
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="echo"),
        options=[("grpc.max_receive_message_length", args.max_receive),
                 ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials([(args.key.read_bytes(), args.cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    print(f"gRPC: 127.0.0.1:{port} (TLS)", flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stopping.wait()
    server.stop(0).wait(2)


if __name__ == "__main__":
    main()
