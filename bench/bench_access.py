"""What the role check costs a request, in process: ``authorize`` (read the bearer token, SHA-256
it, compare it in constant time with every configured token, compare roles) and a writer's
``allow_write``, on a fresh request each time, as the hot route runs them.

Measured for no token configured (the open API on loopback) and for 1, 4 and 16 access entries,
with the matching token last (the loop compares every token anyway), and for an unknown token. The
figure is the best of several rounds, so other processes on the machine do not inflate it. The
last line compares the 4-token check with the time the end-to-end PUT takes at the rate of
``bench/bench_e2e.py``.

    python bench/bench_access.py [--rounds 7] [--calls 20000] [--e2e-rate 3500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from starlette.requests import Request

from flowctl.runtime.api.access import Access, access_of, allow_write, authorize
from flowctl.sources.errors import Unauthorized
from flowctl.spec.config import load_bundle
from flowctl.testing import write_config

OBJECTS = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: deal}
spec:
  fields:
    title: {type: string}
"""


def access_with(tokens: int, root: Path) -> tuple[Access, str]:
    """An Access of ``tokens`` entries (the last a writer of deals) and that writer's token."""
    entries = "".join(
        f'    - {{name: t{i}, token: "${{T{i}}}", role: {"writer" if i == tokens - 1 else "viewer"}}}\n'
        for i in range(tokens)
    )
    spec = f"spec:\n  access:\n{entries}" if tokens else "spec: {}\n"
    config = f"apiVersion: flowctl/v1\nkind: Config\nmetadata: {{name: bench}}\n{spec}---{OBJECTS}"
    loaded = load_bundle(write_config(root / f"c{tokens}", {"flowctl.yaml": config}))
    assert loaded.bundle is not None, loaded.errors
    env = {f"T{i}": f"{i:02d}" + "x" * 62 for i in range(tokens)}
    return access_of(loaded.bundle, env), env.get(f"T{tokens - 1}", "")


def scope(token: str) -> dict[str, object]:
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {"type": "http", "method": "PUT", "path": "/v1/records/deal/1", "headers": headers}


def per_call(access: Access, token: str, calls: int, rounds: int) -> float:
    """Best microseconds per check over ``rounds`` of ``calls``."""
    raw = scope(token)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            request = Request(raw)
            try:
                principal = authorize(request, access, "writer")
                allow_write(principal, "deal")
            except Unauthorized:
                pass
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--e2e-rate", type=float, default=3500.0, help="PUT/s of bench_e2e.py, 64 clients")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        figures: dict[int, float] = {}
        for tokens in (0, 1, 4, 16):
            access, token = access_with(tokens, root)
            figures[tokens] = per_call(access, token, args.calls, args.rounds)
            print(f"{tokens:2d} tokens: {figures[tokens]:.2f} µs per request", flush=True)
        access, _ = access_with(4, root)
        unknown = per_call(access, "not-a-token-" + "y" * 52, args.calls, args.rounds)
        print(f" 4 tokens, an unknown one (401): {unknown:.2f} µs per request", flush=True)
    budget = 1e6 / args.e2e_rate
    print(
        f"role check: {figures[4]:.2f} µs per request with 4 tokens ({figures[0]:.2f} µs with none), "
        f"{figures[4] / budget:.2%} of a PUT's {budget:.0f} µs at {args.e2e_rate:,.0f}/s"
    )


if __name__ == "__main__":
    main()
