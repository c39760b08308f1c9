"""The evidence for hypercorn's keep-alive "hang" at short_io=1: every io_uring
operation (time, fd, opcode, bytes asked, result) and, 3 s in, trio's task tree
and every memory channel's statistics.

    python hypercorn_trace.py [SHORT_IO]     # in hypercorn's venv; ops in /tmp/hypercorn-trace-N.txt

The test_keep_alive_max_requests_regression scenario on 127.0.0.1:1235.  At
SHORT_IO=1 the dump shows hypercorn's app task blocked in http_stream.py's
handle (``app_put`` of ``http.disconnect``) and a channel with 10 of 10
messages, two senders waiting, no receiver; the op trace shows the server's
last RECV long before the client's second request (docs/testing.md, "What it
found").  Uses trio_uring.testing's private plan class: a debugging aid.
"""

import sys
import time
import traceback

import httpx
import hypercorn.trio
import trio
import trio.testing
from hypercorn.config import Config

import trio_uring
from trio_uring import testing

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1
T0 = time.monotonic()
LOG = []


class TracePlan(testing._Plan):
    def on_submit(self, manager, op, prep, args):
        prep2, args2 = super().on_submit(manager, op, prep, args)
        rec = self.log.ops[-1]
        name = getattr(prep, "__name__", "")
        n = args2[testing._LENGTH_ARG[name]] if name in testing._LENGTH_ARG else None
        entry = [round(time.monotonic() - T0, 3), op.fd, rec.opcode, n, None, rec.site.split("site-packages/")[-1]]
        LOG.append(entry)
        prev = op.on_cqe

        def on_cqe(res, prev=prev, entry=entry):
            entry[4] = res
            return prev(res) if prev else res

        op.on_cqe = on_cqe
        return prep2, args2


async def app(scope, receive, send):
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [[b"content-type", b"text/plain"]]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


async def main():
    config = Config()
    config.bind = ["127.0.0.1:1235"]
    config.keep_alive_max_requests = 2
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        nursery.start_soon(lambda: hypercorn.trio.serve(app, config, shutdown_trigger=shutdown.wait))
        await trio.testing.wait_all_tasks_blocked()

        async def dump():
            await trio.sleep(3)

            def walk(task, depth=0):
                frames = [
                    f"{f.f_code.co_filename.split('site-packages/')[-1]}:{ln} {f.f_code.co_name}"
                    for f, ln in task.iter_await_frames()
                ]
                print(
                    "  " * depth
                    + f"TASK {task.name}: "
                    + " <- ".join(reversed([x for x in frames if "hypercorn" in x or x is frames[-1]])),
                    flush=True,
                )
                for n in task.child_nurseries:
                    for t in n.child_tasks:
                        walk(t, depth + 1)

            walk(trio.lowlevel.current_root_task())
            import gc

            for obj in gc.get_objects():
                if type(obj).__name__ == "MemorySendChannel":
                    print("CHANNEL", obj.statistics(), flush=True)

        nursery.start_soon(dump)
        client = httpx.AsyncClient()
        try:
            for i in range(10):
                r = await client.post("http://127.0.0.1:1235/test", json={"key": "value"}, timeout=5)
                print("request", i, r.status_code, r.headers, flush=True)
        finally:
            shutdown.set()


plan = TracePlan(short_io=N)
tls = testing.installation.tls
tls.fault_hook = plan
try:
    trio_uring.run(main)
except BaseException:
    import traceback

    traceback.print_exc()
finally:
    with open(f"/tmp/hypercorn-trace-{N}.txt", "w") as f:
        for e in LOG:
            f.write(" ".join(map(str, e)) + "\n")
