"""Many files at once: worker processes on this machine (``denoise --jobs``) or Ray actors (``denoise --ray``).

``run(work, items, jobs, ray)`` runs ``work`` on every item and yields each result as it is done, in any order.
A work is picklable settings with three methods: ``worker()``, a context manager entered once per worker (it
loads the model) that gives the function run on each item; ``died(item)``, the result of an item whose worker
died while running it alone; and ``abandoned(item)``, which cleans up after an item whose worker was stopped
part-way. ``FileWork`` denoises files through ``denoise_task``, the one per-file function of every path (one
process, workers, Ray actors); ``evaluate`` has a work of its own. ``RayDenoiser`` is a callable class for Ray
Data's ``Dataset.map_batches``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from .atomic import discard, temporaries
from .audio import AudioError, FileResult

INSTALL_RAY = "pip install 'audiodenoise[ray]'"
CONNECT_SECONDS = 5.0  # how long an unreachable --ray address may take to fail
STOP_SECONDS = 30.0  # how long stopped Ray actors may take to die
RAY_PORTS = {"": 6379, "ray": 10001}  # a cluster's default port: the GCS's, Ray Client's
# Ray reads this when imported: 0 keeps a local instance on 127.0.0.1 (servers on loopback, no lookup of the
# machine's outside address by a UDP connect to 8.8.8.8).
LOCAL_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
PRELOAD = ["audiodenoise.denoiser"]  # what the pool's fork server imports once, for every worker
PROXIES = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")


class BatchError(ValueError):
    """A batch that cannot run (Ray missing or unreachable, workers that cannot start), worded for the user."""


class Work(Protocol):
    def worker(self) -> contextlib.AbstractContextManager[Callable[[Any], Any]]: ...

    def died(self, item: Any) -> Any: ...

    def abandoned(self, item: Any) -> None: ...


@dataclass(frozen=True)
class Task:
    source: Path
    destination: Path


@dataclass(frozen=True)
class Outcome:
    """One file's end: its result, or the one line saying why it failed; when it ran (``time.time()``)."""

    task: Task
    result: FileResult | None
    error: str | None
    started: float
    finished: float


def denoise_task(denoiser, task: Task, mp3_kbps: int | None = None) -> Outcome:
    """Denoise one file with ``denoiser`` (a Denoiser, or the client of a server): its output folder made,
    written atomically, never over its input; a file's own problem is its failure, not the batch's."""
    started = time.time()
    try:
        try:
            task.destination.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise AudioError(f"{task.destination.parent}: cannot create output folder ({error.strerror})") from None
        result = denoiser.denoise_file(task.source, task.destination, mp3_kbps)
    except AudioError as error:
        return Outcome(task, None, str(error), started, time.time())
    except MemoryError:
        return Outcome(task, None, f"{task.source}: out of memory", started, time.time())
    return Outcome(task, result, None, started, time.time())


def span_seconds(outcomes: Iterable[Outcome]) -> float:
    """From the first file's start to the last one's end: the batch's time, its workers' start-up left out."""
    outcomes = list(outcomes)
    return max(o.finished for o in outcomes) - min(o.started for o in outcomes) if outcomes else 0.0


@dataclass(frozen=True)
class FileWork:
    """Denoising files: ``make_denoiser`` (picklable, e.g. a partial of ``Denoiser.from_pretrained``) runs once
    in each worker; outputs are MP3 at ``mp3_kbps`` where they are MP3."""

    make_denoiser: Callable[[], Any]
    mp3_kbps: int | None = None

    @contextlib.contextmanager
    def worker(self) -> Iterator[Callable[[Task], Outcome]]:
        denoiser = self.make_denoiser()
        yield lambda task: denoise_task(denoiser, task, self.mp3_kbps)

    def died(self, task: Task) -> Outcome:
        now = time.time()
        return Outcome(task, None, f"{task.source}: its worker died (killed, or out of memory)", now, now)

    def abandoned(self, task: Task) -> None:
        for temp in temporaries(task.destination):
            discard(temp)


def default_threads(jobs: int | None, ray: str | None) -> int | None:
    """--threads when not given: 1 per Ray actor; the cores shared out among several local jobs; else None, all
    of them (the engines' own default)."""
    if ray:
        return 1
    return max(1, _cores() // jobs) if jobs and jobs > 1 else None


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run(
    work: Work, items: list, jobs: int | None = None, ray: str | None = None, threads: int | None = None
) -> Iterator:
    """Each item's result, as it is done. ``jobs`` workers (default 1: this process, in order), or with ``ray``
    (``local``, ``auto`` or a cluster address) that many Ray actors of ``threads`` CPUs each (default: as many
    as the cluster's CPUs hold)."""
    if ray:
        return _run_on_ray(work, items, ray, jobs, threads or 1)
    if (jobs or 1) == 1 or len(items) < 2:
        return _run_here(work, items)
    return _run_pool(work, items, min(jobs, len(items)))


def _run_here(work: Work, items: list) -> Iterator:
    with work.worker() as run_item:
        yield from map(run_item, items)


# --- worker processes -----------------------------------------------------------------------------------


class _Loaded:
    """One worker's ``work.worker()``, entered once in the driver's folder (it is left when the process ends),
    or the error that loading raised, raised again by each item so that it reaches the driver."""

    def __init__(self, work: Work, folder: str):
        self.failure: Exception | None = None
        try:
            os.chdir(folder)  # relative paths name the driver's files (on Ray: a filesystem the nodes share)
        except OSError as error:
            self.failure = BatchError(
                f"{folder}: not found on a Ray node; inputs and outputs must be on a filesystem every node mounts "
                f"at the same path ({error.strerror})"
            )
            return
        try:
            self.context = work.worker()
            self.run_item = self.context.__enter__()
        except Exception as error:
            self.failure = error

    def run(self, item):
        if self.failure is not None:
            raise self.failure
        return self.run_item(item)


_worker: tuple[_Loaded, Any] | None = None  # in a pool's worker process: what it loaded, and where it says it starts


def _start_worker(work: Work, folder: str, started) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops its workers (also where SIGINT is not blocked)
    _worker = (_Loaded(work, folder), started)


def _run_item(index: int, item):
    loaded, started = _worker
    started.put(index)
    return loaded.run(item)


def _run_pool(work: Work, items: list, workers: int) -> Iterator:
    """Items on ``workers`` processes. When one dies (killed, out of memory) the pool is lost: the items then in
    flight run again one at a time, each alone in a fresh worker, so that a death names its item (``work.died``);
    the rest go on in a fresh pool."""
    queue = list(items)
    while queue:
        in_flight, queue = yield from _pool_round(work, queue, workers)
        for item in in_flight:
            again, _ = yield from _pool_round(work, [item], 1)
            if again:
                yield work.died(item)


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Workers (and their fork server) started in here inherit a blocked SIGINT: Ctrl-C reaches the driver alone,
    which stops them."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _pool_round(work: Work, items: list, workers: int) -> Iterator:
    """Run ``items`` on a fresh pool, yielding each result; return the items in flight when a worker died and
    those it never started (both empty when all finished)."""
    # Workers fork from a server that has only imported the denoiser's modules (PyTorch among them), not from this
    # process, whose threads a fork would break: each starts in milliseconds, sharing the imported code.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    started = context.SimpleQueue()
    pool = ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=(work, os.getcwd(), started))
    futures: dict = {}
    done: set[int] = set()
    running: set[int] = set()  # the items a worker said it started

    def drain() -> None:  # as results come, so that the queue's pipe never fills and blocks the workers
        while not started.empty():
            running.add(started.get())

    try:
        with _sigint_blocked():
            for index, item in enumerate(items):
                futures[pool.submit(_run_item, index, item)] = index
        for future in as_completed(futures):
            drain()
            if isinstance(future.exception(), BrokenProcessPool):
                break
            done.add(futures[future])
            yield future.result()
    except BrokenProcessPool:  # from submit: a worker died while the items were handed out
        pass
    except BaseException:  # Ctrl-C, or the caller stopped: the workers stop now, not after their files
        # Python 3.14 has pool.kill_workers() for this.
        for process in list((pool._processes or {}).values()):
            process.kill()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        drain()
        in_flight = sorted(running - done)
        for index in in_flight:
            work.abandoned(items[index])
    for future, index in futures.items():  # finished before the pool broke, not yet given
        if index not in done and not future.cancelled() and future.exception() is None:
            done.add(index)
            yield future.result()
    rest = [item for index, item in enumerate(items) if index not in done and index not in in_flight]
    if len(rest) == len(items):
        raise BatchError("the workers died before they could start (out of memory?)")
    return [items[index] for index in in_flight], rest


# --- Ray ------------------------------------------------------------------------------------------------


def _import_ray(local: bool):
    """Ray, imported without usage statistics (unless RAY_USAGE_STATS_ENABLED says otherwise), and for a local
    instance kept on loopback; one line saying how to install it where it is missing."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with _environment(LOCAL_RAY if local else {}):
        try:
            import ray
        except ImportError:
            raise BatchError(f"--ray needs Ray: {INSTALL_RAY}") from None
    return ray


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_reachable(address: str) -> None:
    """One line at once where nothing answers at a cluster address (Ray itself would retry for a long while)."""
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        host, port = parts.hostname, parts.port or RAY_PORTS.get(parts.scheme)
    except ValueError:
        host = port = None
    if not host or not port:
        raise BatchError(f"--ray {address}: not local, auto, HOST:PORT nor ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise BatchError(f"--ray {address}: nothing answers at {host}:{port} ({error.strerror or error})") from None


@contextlib.contextmanager
def ray_session(address: str, cpus: int | None = None):
    """Ray connected for the block, then disconnected: ``local`` starts an instance on this machine with ``cpus``
    CPUs (default: all) and stops it after; ``auto`` joins the cluster running here, as ``ray.init("auto")``;
    anything else is a cluster's address. A local instance listens on loopback only, reports no usage, has no
    dashboard, and its head's probe of cloud metadata (ray 2.60 makes it whatever the usage setting) goes to a
    loopback port this process keeps closed. It stays on loopback only when Ray is first imported here. A process
    already connected to Ray (a notebook, a Ray Data pipeline) uses that connection, whatever the address, and
    keeps it."""
    local = address == "local"
    if not local and address != "auto":
        _check_reachable(address)
    ray = _import_ray(local)
    if ray.is_initialized():
        yield ray
        return
    options = {"log_to_driver": False, "logging_level": "ERROR"}
    with contextlib.ExitStack() as stack:
        stack.callback(ray.shutdown)  # also after a failed or interrupted start: it stops what did start
        try:
            if local:
                sink = stack.enter_context(socket.socket())
                sink.bind(("127.0.0.1", 0))  # bound, never listening: a connection to it is refused
                closed = f"http://127.0.0.1:{sink.getsockname()[1]}"
                with _environment({**LOCAL_RAY, **dict.fromkeys(PROXIES, closed), "no_proxy": "", "NO_PROXY": ""}):
                    ray.init(num_cpus=cpus, include_dashboard=False, **options)
            else:
                ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise BatchError(f"--ray {address}: {first}") from None
        yield ray


def _run_on_ray(work: Work, items: list, address: str, actors: int | None, cpus: int) -> Iterator:
    with ray_session(address, actors * cpus if actors and address == "local" else None) as ray:
        total = int(ray.cluster_resources().get("CPU", 0))
        actors = actors or max(1, total // cpus)
        if actors * cpus > total:
            raise BatchError(
                f"--ray {address}: {actors} workers of {cpus} CPUs need {actors * cpus}; the cluster has {total}"
            )
        yield from _on_actors(ray, work, items, min(actors, len(items)), cpus)


def _on_actors(ray, work: Work, items: list, count: int, cpus: int) -> Iterator:
    """Items on ``count`` actors, one at a time each. An actor that dies fails its item (``work.died``) and is
    replaced; on Ctrl-C the actors are killed and their items' leftovers removed."""
    actor_class = ray.remote(num_cpus=cpus)(_Loaded)
    folder = os.getcwd()
    idle = [actor_class.remote(work, folder) for _ in range(count)]
    pending, running = list(reversed(items)), {}
    try:
        while pending or running:
            while idle and pending:
                actor = idle.pop()
                item = pending.pop()
                running[actor.run.remote(item)] = item, actor
            [ready], _ = ray.wait(list(running), num_returns=1)
            item, actor = running.pop(ready)
            try:
                result = ray.get(ready)
            except ray.exceptions.RayActorError:
                ray.kill(actor)
                work.abandoned(item)
                result, actor = work.died(item), actor_class.remote(work, folder)
            except ray.exceptions.RayTaskError as error:  # what the work raised: as if it ran here
                raise error.cause from None
            idle.append(actor)
            yield result
    except BaseException:
        for _, actor in running.values():
            ray.kill(actor)
        if running:
            ray.wait(list(running), num_returns=len(running), timeout=STOP_SECONDS)
        for item, _ in running.values():
            work.abandoned(item)
        raise


# --- Ray Data -------------------------------------------------------------------------------------------


class RayDenoiser:
    """A callable class for ``ray.data.Dataset.map_batches``: each actor loads the model once.

    Batches (numpy format) hold an ``audio`` column of arrays, in any layout the Denoiser takes ((samples,),
    (samples, channels) or (channels, samples)), and a ``rate`` column of sample rates; the denoised arrays
    replace the audio, in the same layout. The column names default to those of ``ray.data.read_audio``;
    ``options`` are ``Denoiser.from_pretrained``'s::

        import ray
        from audiodenoise.batch import RayDenoiser

        noisy = ray.data.read_audio("/shared/noisy/")  # columns amplitude (channels, samples) and sample_rate
        clean = noisy.map_batches(RayDenoiser, fn_constructor_kwargs={"model": "default", "threads": 1},
                                  concurrency=4, batch_size=8, num_cpus=1)
        for row in clean.iter_rows(): ...
    """

    def __init__(self, model: str = "default", audio: str = "amplitude", rate: str = "sample_rate", **options):
        from .denoiser import Denoiser

        self.denoiser = Denoiser.from_pretrained(model, **options)
        self.audio, self.rate = audio, rate

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        denoised = np.empty(len(batch[self.audio]), dtype=object)  # one array each: lengths may differ
        for index, (audio, rate) in enumerate(zip(batch[self.audio], batch[self.rate])):
            denoised[index] = self.denoiser(np.asarray(audio), int(rate))
        return {**batch, self.audio: denoised}
