"""A sweep shared by several processes (``jax.distributed``): who computes which cell, and how
every finished cell reaches process 0, the one writer.

1. Process 0 plans as a single process would (:func:`._cells._plan`: reuse under ``--resume``,
   recompute changed or corrupt cells) and publishes the names to compute and every reused
   payload in the coordination service's store.
2. Every process, process 0 included, takes the next cell from an atomic counter (a work queue:
   a process that finishes early takes more, so cells of very different cost balance out),
   computes it on its own devices (retrainings are sharded over them, see
   :func:`mhatheory.stability.retrain`) and publishes the payload.
3. On process 0 a collector thread writes each published cell atomically as it arrives, so a
   killed run loses only the cells in progress; process 0 writes its own cells at once.
4. Every process waits for all payloads and returns them in order, so the rest of the
   experiment runs the same everywhere; only process 0 writes (:mod:`mhatheory.results`).

Which process computes a cell does not change its result: a cell is a function of the config
and its spec (its seeds included). A failing cell is reported to the others
(:func:`mhatheory.distributed.report_failure`) before its exception propagates, and every wait
checks for reports, and a peer that stopped responding is named and stops the others
(``mhatheory.distributed``), so no process waits forever.
"""

from __future__ import annotations

import itertools
import sys
import threading
from pathlib import Path

from tqdm.auto import tqdm

from mhatheory import _numerics, distributed, results
from mhatheory.experiments.sweep import _cells

_SEQUENCE = itertools.count()  # one namespace per sweep; every process runs the same sweeps


class _Collector(threading.Thread):
    """Process 0: writes each cell another process finishes, in the order they finish."""

    def __init__(self, channel: distributed.Channel, folder: Path, total: int, bar):
        super().__init__(name="mhatheory-cell-writer", daemon=True)
        self.channel, self.folder, self.total, self.bar = channel, folder, total, bar
        self.written: dict[str, dict] = {}
        self.error: BaseException | None = None
        self.halt = threading.Event()
        self.lock = threading.Lock()

    def mark_written(self, name: str, payload: dict) -> None:
        with self.lock:
            self.written[name] = payload
        self.bar.update(1)

    def run(self) -> None:
        try:
            for k in range(self.total):
                name = self.channel.get(f"done/{k}", stop=self.halt)
                if name is None:                   # halted by the main thread
                    return
                with self.lock:
                    mine = name in self.written
                if not mine:
                    payload = self.channel.get(f"result/{name}", stop=self.halt)
                    if payload is None:
                        return
                    results.write_json_atomic(self.folder / f"{name}.json", payload)
                    self.mark_written(name, payload)
        except BaseException as err:  # noqa: BLE001  (handed to the main thread)
            self.error = err
            if not isinstance(err, distributed.DistributedError):
                distributed.report_failure(f"writing the cell files failed: "
                                           f"{type(err).__name__}: {err}")

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        """Wait until every computed cell is written (or a failure stops it)."""
        while self.is_alive():
            self.join(0.5)
        self.check()


def run_shared(folder: Path, cells: list, compute, *, want_config, versions: dict,
               resume: bool, progress: bool, desc: str) -> _cells.Cells:
    """:func:`mhatheory.experiments.sweep.run_cells` for a multi-process run (module
    docstring); the same payloads, in the same order, with the same ``info`` on every
    process."""
    channel = distributed.Channel(f"sweep{next(_SEQUENCE)}")
    writer = distributed.is_writer()
    if writer:
        folder.mkdir(parents=True, exist_ok=True)
        reused, todo, info = _cells._plan(folder, cells, want_config, resume)
        for name, payload in reused.items():
            channel.put(f"result/{name}", payload)
        channel.put("plan", {"todo": [name for name, _ in todo], "info": info})
    plan = channel.get("plan")
    specs, todo = dict(cells), plan["todo"]
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=desc, unit="cell",
               disable=not (progress and writer))
    collector = _Collector(channel, folder, len(todo), bar) if writer else None
    mine: dict[str, dict] = {}
    with distributed.stop_on_peer_failure():
        try:
            if collector is not None:
                collector.start()
            while True:
                distributed.check_peers()
                if collector is not None:
                    collector.check()
                i = channel.ticket("next")
                if i >= len(todo):
                    break
                name = todo[i]
                try:
                    result = compute(specs[name])
                except BaseException as err:
                    distributed.report_failure(f"cell {name} failed: {type(err).__name__}: {err}")
                    raise
                payload = _cells._payload(name, specs[name], want_config, versions, result)
                if collector is not None:
                    results.write_json_atomic(folder / f"{name}.json", payload)
                    collector.mark_written(name, payload)
                channel.put(f"result/{name}", payload)
                channel.put(f"done/{channel.ticket('finished')}", name)
                _numerics.relieve_code_mappings()
                mine[name] = payload
            if collector is not None:
                collector.finish()
        finally:
            if collector is not None:
                collector.halt.set()
            bar.close()
    print(f"{desc}: process {distributed.process_index()} computed {len(mine)} of {len(todo)} "
          f"cells ({', '.join(mine) or 'none'})", file=sys.stderr)
    written = collector.written if collector is not None else {}
    out = _cells.Cells(mine.get(name) or written.get(name) or channel.get(f"result/{name}")
                       for name, _ in cells)
    out.info = plan["info"]
    return out
