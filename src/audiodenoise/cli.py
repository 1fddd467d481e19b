"""The ``audiodenoise`` command line: a thin layer over the Denoiser, the data pipeline and the trainer."""

from __future__ import annotations

import argparse
import glob
import os
import sys
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

from . import pretrained
from .audio import (
    AUDIO_SUFFIXES,
    DEFAULT_MP3_KBPS,
    MIN_MP3_KBPS,
    MP3_KBPS_RANGES,
    AudioError,
    check_channels,
    check_sample_rate,
    denoised_name,
    is_denoised,
)
from .checkpoint import CheckpointError, read_config
from .client import DEADLINE_SECONDS, ServerError
from .config import ConfigError, add_options, given_options, option_type
from .data.dataset import DatasetError
from .engine import AUTO_ENGINE, DEFAULT_ENGINE, ENGINES
from .limits import Limits
from .nets import ARCHITECTURES
from .pcm import RAW_FORMATS
from .spectral import DEFAULT_STFT, STFT_PRESETS, SpectralConfig, low_latency_settings
from .train import RunConfig, TrainConfig, TrainingError, train_run

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2
USER_ERRORS = (AudioError, CheckpointError, DatasetError, ServerError, TrainingError, ValueError, OSError)


@dataclass(frozen=True)
class Job:
    source: Path
    relative: Path  # where the output goes under an output folder


def expand_inputs(inputs: list[str]) -> tuple[list[Job], list[str]]:
    """Files, folders (searched recursively) and globs -> jobs, plus an error line per input that found nothing."""
    jobs, errors = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not is_denoised(p)
            )
            jobs += [Job(p, p.relative_to(path)) for p in found]
            if not found:
                errors.append(f"{item}: folder holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
        elif path.exists() or not glob.has_magic(item):
            jobs.append(Job(path, Path(path.name)))
        else:
            base = _glob_base(path)
            found = sorted(
                Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file() and not is_denoised(Path(p))
            )
            jobs += [Job(p, p.relative_to(base)) for p in found]
            if not found:
                errors.append(f"{item}: pattern matches no files")
    return jobs, errors


def _glob_base(pattern: Path) -> Path:
    """The folder a glob searches from: its parts before the first wildcard."""
    fixed = []
    for part in pattern.parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def output_path(job: Job, output: str | None, single_file: bool) -> Path:
    if output is None:
        return job.source.with_name(denoised_name(job.source.name))
    if single_file and not Path(output).is_dir():
        return Path(output)
    return Path(output) / job.relative


def _make_denoiser(args: argparse.Namespace, threads: int | None) -> partial:
    """What makes the Denoiser that the options ask for (picklable: each worker makes its own)."""
    from .denoiser import Denoiser

    return partial(
        Denoiser.from_pretrained,
        args.model,
        strength=args.strength,
        atten_lim_db=args.atten_lim_db,
        threads=threads,
        engine=args.engine,
        low_latency=args.low_latency,
    )


def cmd_denoise(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .batch import FileWork, Task, default_threads, run, span_seconds

    if args.stream:
        return denoise_stream(args)
    if args.server and ((args.jobs or 1) > 1 or args.ray):
        raise ValueError("--jobs and --ray denoise here or on a Ray cluster, not with --server")
    if any(option is not None for option in (args.raw_format, args.rate, args.channels)):
        raise ValueError("--raw-format, --rate and --channels go with --stream")
    jobs, failures = expand_inputs(args.inputs)
    unmatched = len(failures)
    for line in failures:
        print(f"audiodenoise: error: {line}", file=sys.stderr)
    if not jobs:
        return EXIT_FAILURES
    single_file = len(args.inputs) == 1 and Path(args.inputs[0]).is_file()
    if args.output and not single_file and Path(args.output).suffix.lower() in AUDIO_SUFFIXES:
        if not Path(args.output).is_dir():
            raise ValueError(f"-o {args.output}: names one file, but the inputs are several; give a folder")
    threads = args.threads or default_threads(args.jobs, args.ray)
    if args.server:
        from .client import RemoteDenoiser

        if args.atten_lim_db is not None or args.threads is not None or args.engine is not None or args.low_latency:
            raise ValueError(
                "--atten-lim-db, --threads, --engine and --low-latency apply to local denoising, not to --server"
            )
        make_denoiser = partial(RemoteDenoiser, args.server, args.model, args.strength, args.server_deadline)
    else:
        make_denoiser = _make_denoiser(args, threads)
    tasks = [Task(job.source, output_path(job, args.output, single_file)) for job in jobs]
    work = FileWork(make_denoiser, args.mp3_bitrate)
    done = []
    with tqdm(total=len(tasks), unit="file", desc="denoising", disable=args.quiet or None, file=sys.stderr) as bar:
        for outcome in run(work, tasks, args.jobs, args.ray, threads):
            bar.update()
            if outcome.error:
                failures.append(outcome.error)
                bar.write(f"audiodenoise: error: {outcome.error}", file=sys.stderr)
            else:
                done.append(outcome)
    total = len(jobs) + unmatched
    audio_seconds = sum(outcome.result.audio_seconds for outcome in done)
    seconds = span_seconds(done)
    rtf = seconds / audio_seconds if audio_seconds else 0.0
    if not args.quiet:
        print(
            f"{total - len(failures)} of {total} inputs denoised, {len(failures)} failed; "
            f"{audio_seconds:.1f} s of audio in {seconds:.1f} s (real-time factor {rtf:.3f})"
        )
    return EXIT_FAILURES if failures else EXIT_OK


def denoise_stream(args: argparse.Namespace) -> int:
    """WAV or raw PCM from stdin, denoised in the same format to stdout, in bounded memory."""
    from .pcm import PcmFormat, pump, read_wav_header

    if args.inputs != ["-"] or args.output or args.server or args.jobs or args.ray:
        raise ValueError(
            "--stream reads stdin and writes stdout: give '-' as the only input, no -o, --server, --jobs or --ray"
        )
    raw_options = (args.raw_format, args.rate, args.channels)
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    if all(option is not None for option in raw_options):
        pcm, remaining = PcmFormat(RAW_FORMATS[args.raw_format], args.rate, args.channels), None
    elif any(option is not None for option in raw_options):
        raise ValueError("raw PCM needs all of --raw-format, --rate and --channels")
    else:
        pcm, remaining = read_wav_header(source)
    check_sample_rate(pcm.sample_rate, "stdin")
    check_channels(pcm.channels, "stdin")
    stream = _make_denoiser(args, args.threads)().stream(pcm.sample_rate, pcm.channels)
    try:
        if not args.raw_format:
            sink.write(pcm.wav_header(remaining))
        pump(stream, pcm, remaining, source, sink)
    except BrokenPipeError:
        # The reader went away: stop quietly, and keep Python from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _spectral(args: argparse.Namespace, base: dict | None = None) -> dict:
    """The spectral section: ``base`` (a config file's), then the --stft preset, then single options."""
    preset = STFT_PRESETS[args.stft].to_dict() if "stft" in args else {}
    return (base or {}) | preset | given_options(args, "spectral")


def _sections(args: argparse.Namespace, document: dict, names) -> dict:
    """``document`` with each section's options from the command line laid over it."""
    return document | {name: document.get(name, {}) | given_options(args, name) for name in names}


def _print_dataset(folder: str, manifest: dict) -> None:
    splits = ", ".join(f"{name} {split['pairs']}" for name, split in manifest["splits"].items())
    counts = manifest["counts"]
    print(
        f"{folder}: {splits} patch pairs from {counts['clean_files']} clean files "
        f"({counts['skipped']} skipped as too long or silent, {counts['failed']} unreadable files"
        + (f", listed in {Path(folder) / 'manifest.json'}" if counts["failed"] else "")
        + ")"
    )


def cmd_prepare(args: argparse.Namespace) -> int:
    from .data.mixing import MixConfig
    from .data.prepare import parse_shard, prepare
    from .data.splits import SplitConfig

    result = prepare(
        args.speech,
        args.noise,
        args.output,
        spectral=SpectralConfig.from_dict(_spectral(args), prefix="spectral."),
        mixing=MixConfig.from_dict(given_options(args, "mixing")),
        split_config=SplitConfig.from_dict(given_options(args, "split")),
        max_files=args.max_files,
        files_per_chunk=args.files_per_chunk,
        workers=args.workers,
        shard=parse_shard(args.shard),
        overwrite=args.overwrite,
    )
    if result.manifest is None:
        print(
            f"{args.output}: shard {args.shard} done; {result.chunks_done} of {result.chunks} chunks present. "
            "When every shard is done, gather them with 'audiodenoise merge'."
        )
    else:
        _print_dataset(args.output, result.manifest)
    return EXIT_OK


def cmd_merge(args: argparse.Namespace) -> int:
    from .data.prepare import merge

    _print_dataset(args.output, merge(args.parts, args.output))
    return EXIT_OK


def read_config_file(path: str) -> dict:
    """A JSON or TOML config file as a dict; one line naming the file when it cannot be read."""
    import json
    import tomllib

    try:
        text = Path(path).read_text()
        document = tomllib.loads(text) if Path(path).suffix.lower() == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read ({getattr(error, 'strerror', None) or error})") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'} ({error})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: must hold a table of settings")
    return document


def cmd_train(args: argparse.Namespace) -> int:
    document = read_config_file(args.config) if args.config else {}
    if len(args.paths) == 2:
        document["dataset"] = args.paths[0]
    elif len(args.paths) != 1:
        raise ValueError("give DATASET RUN_DIR, or RUN_DIR with --speech/--noise or --config")
    document = _sections(args, document | given_options(args, "run"), ("model", "train", "mixing", "split"))
    document["spectral"] = _spectral(args, document.get("spectral"))
    seed = given_options(args, "train").get("seed")
    if seed is not None:  # --seed: the on-the-fly split's too, as prepare's --seed
        document["split"] = document["split"] | {"seed": seed}
    try:
        run = RunConfig.from_dict(document)
    except ConfigError as error:
        raise ConfigError(f"{args.config}: {error}" if args.config else str(error)) from None
    run_dir = args.paths[-1]
    state = train_run(run, run_dir, resume=args.resume)
    print(
        f"{run_dir}: trained {state['step']} steps; best {run.train.select_by} {state['best']:.5f}; "
        f"best checkpoint in {Path(run_dir) / 'best'}; its config in {Path(run_dir) / 'config.json'}"
    )
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import find_pairs, run
    from .report import format_report, write_report

    pairs = find_pairs(args.noisy, args.clean, args.pairs)[: args.max_files]
    report = run(
        pairs,
        args.systems,
        threads=args.threads,
        engine=args.engine,
        progress=True,
        log=lambda line: print(f"audiodenoise: {line}", file=sys.stderr),
        jobs=args.jobs,
    )
    print(format_report(report))
    for score in report.failures:
        print(f"audiodenoise: error: {score.pair} ({score.system}): {score.error}", file=sys.stderr)
    if args.output:
        write_report(report, args.output)
        print(f"report: {Path(args.output) / 'report.md'}")
    return EXIT_FAILURES if report.failures or report.skipped else EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import serve

    limits = Limits.from_dict(given_options(args, "limits"))
    return serve(
        args.model or ["default"],
        args.host,
        args.port,
        limits,
        args.threads,
        args.engine,
        tuple(args.allowed_host),
        tuple(args.cors_origin),
    )


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    export_onnx(args.model, args.output)
    size = Path(args.output).stat().st_size / 2**20
    print(f"{args.output}: {args.model} as ONNX ({size:.1f} MiB), its settings in the metadata")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from .checkpoint import WEIGHTS, load_checkpoint
    from .denoiser import Denoiser

    for name in pretrained.available():
        folder = pretrained.resolve(name)
        model, spectral, _ = load_checkpoint(folder)
        denoiser = Denoiser(model, spectral, engine="torch")
        if denoiser.frame_streaming:
            latency = f"latency {denoiser.latency_seconds * 1000:.0f} ms (streams frame by frame)"
        else:
            low_latency = Denoiser(model, spectral, engine="torch", low_latency=True).latency_seconds
            latency = f"latency {denoiser.latency_seconds:.1f} s ({low_latency * 1000:.0f} ms with --low-latency)"
        parameters = sum(p.numel() for p in model.parameters()) / 1e6
        marker = " (default)" if name == pretrained.DEFAULT_MODEL else ""
        print(
            f"{name}{marker}: {model.summary}; STFT n_fft {spectral.n_fft}, hop {spectral.hop_length} "
            f"at {spectral.sample_rate} Hz; {latency}; "
            f"{parameters:.2f} M parameters, {(folder / WEIGHTS).stat().st_size / 2**20:.1f} MiB"
        )
    return EXIT_OK


def low_latency_cost(spectral: SpectralConfig) -> float:
    """How many times the model runs with --low-latency: patches every few frames instead of every patch_hop."""
    return spectral.patch_hop / low_latency_settings(spectral).patch_hop


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """End each option's help with its default, where it has one that the help does not already give."""
    for action in parser._actions:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            action.help = f"{text} (default: %(default)s)".lstrip()


_positive_int = option_type(int, 1)
_non_negative_int = option_type(int, 0)
_positive_float = option_type(float, 0, above=True)
_non_negative_float = option_type(float, 0)
_port = option_type(int, 0, 65535)
_fraction = option_type(float, 0, 1)


def _add_corpus_options(parser: argparse.ArgumentParser, split_seed: bool = True) -> None:
    """Reading, splitting, cleaning and mixing: shared by 'prepare' and on-the-fly 'train'."""
    from .data.mixing import MixConfig
    from .data.splits import SplitConfig

    group = parser.add_argument_group("corpora and mixing")
    add_options(group, SplitConfig, "split", skip=() if split_seed else ("seed",))
    add_options(group, MixConfig, "mixing")
    stft = parser.add_argument_group("STFT (stored in the dataset and every checkpoint)")
    stft.add_argument(
        "--stft",
        choices=STFT_PRESETS,
        default=argparse.SUPPRESS,
        help="; ".join(f"{name}: n_fft {c.n_fft}, hop {c.hop_length}" for name, c in STFT_PRESETS.items())
        + f" (default: {DEFAULT_STFT}); the options below change single settings",
    )
    add_options(stft, SpectralConfig, "spectral")


def _add_engine_option(parser: argparse.ArgumentParser, runs: str) -> None:
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default=None,
        help=f"what runs {runs} (default: {DEFAULT_ENGINE}, {AUTO_ENGINE}; .onnx models: onnxruntime)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="audiodenoise", description="Speech denoising with a spectrogram U-Net.")
    commands = parser.add_subparsers(dest="command", required=True)

    denoise = commands.add_parser("denoise", help="denoise audio files")
    denoise.add_argument("inputs", nargs="+", help="files, folders (searched recursively) or globs; '-' with --stream")
    denoise.add_argument("-o", "--output", help="output file (one input file) or folder")
    denoise.add_argument(
        "--model", default="default", help="bundled model name or checkpoint folder (with --server: a server's model)"
    )
    denoise.add_argument(
        "--strength", type=_fraction, default=None, help="0 keeps the input, 1 full denoising (default: the model's)"
    )
    denoise.add_argument("--atten-lim-db", type=float, default=None, help="remove at most this many dB of noise")
    denoise.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="CPU threads for inference, per worker (default: all cores, shared out among --jobs workers; "
        "with --ray 1)",
    )
    denoise.add_argument(
        "--jobs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="worker processes, each loading the model once and denoising whole files; outputs are the same bytes "
        "as one process at the same --threads (default: 1, this process; with --ray: the cluster's CPUs / "
        "--threads). Fastest for many files: --jobs $(nproc) --threads 1, at a model's memory per worker",
    )
    denoise.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="spread the files over Ray actors (pip install 'audiodenoise[ray]'): 'local' starts Ray on this "
        "machine, 'auto' joins the cluster running here, else a cluster address (HOST:PORT, ray://HOST:PORT); "
        "the nodes must see the files at the same paths",
    )
    _add_engine_option(denoise, "the model")
    denoise.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary; errors still print"
    )
    denoise.add_argument(
        "--mp3-bitrate",
        type=option_type(int, MIN_MP3_KBPS, MP3_KBPS_RANGES[0][2]),
        metavar="KBPS",
        help=f"MP3 output at this constant bit rate (default: the input MP3's, else {DEFAULT_MP3_KBPS}; "
        "at most 160 below 32 kHz, 64 below 16 kHz)",
    )
    denoise.add_argument("--server", metavar="URL", help="send the files to a running 'audiodenoise serve' at URL")
    denoise.add_argument(
        "--server-deadline",
        type=_positive_float,
        default=DEADLINE_SECONDS,
        metavar="SECONDS",
        help=f"with --server: give up on a file after this long, waiting while the server is busy "
        f"(default: {DEADLINE_SECONDS:g})",
    )
    streaming = denoise.add_argument_group("streaming (stdin to stdout)")
    streaming.add_argument("--stream", action="store_true", help="denoise WAV (or raw PCM) from stdin to stdout")
    streaming.add_argument("--raw-format", choices=RAW_FORMATS, help="raw little-endian samples instead of WAV")
    streaming.add_argument("--rate", type=_positive_int, help="sample rate of raw samples")
    streaming.add_argument("--channels", type=_positive_int, help="channels of raw samples (interleaved)")
    default_stft = SpectralConfig.from_dict(read_config(pretrained.resolve("default"))["spectral"])
    streaming.add_argument(
        "--low-latency",
        action="store_true",
        help=f"a latency of a fraction of a second instead of a whole block's, for {low_latency_cost(default_stft):g}x "
        "the default model's compute ('audiodenoise models' gives each model's latency)",
    )
    denoise.set_defaults(run=cmd_denoise)

    prepare = commands.add_parser("prepare", help="mix speech and noise corpora into training patches")
    prepare.add_argument("--speech", required=True, help="clean speech corpus (Common Voice, VoxCeleb or a folder)")
    prepare.add_argument("--noise", required=True, help="noise corpus (UrbanSound8K or a folder)")
    prepare.add_argument("-o", "--output", required=True, help="dataset folder to write (or resume)")
    _add_corpus_options(prepare)
    prepare.add_argument("--max-files", type=_positive_int, default=None, help="use at most this many clean files")
    prepare.add_argument("--files-per-chunk", type=_positive_int, default=32, help="clean files per shard file")
    prepare.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1)
    prepare.add_argument("--shard", default="1/1", help="K/N: make only shard K of N (merge them with 'merge')")
    prepare.add_argument("--overwrite", action="store_true", help="replace a dataset made with another config")
    prepare.set_defaults(run=cmd_prepare)

    merge = commands.add_parser("merge", help="gather the shards of 'prepare --shard' into one dataset")
    merge.add_argument("parts", nargs="+", help="folders written by 'prepare --shard K/N'")
    merge.add_argument("-o", "--output", required=True, help="dataset folder (may be one of the parts)")
    merge.set_defaults(run=cmd_merge)

    train = commands.add_parser(
        "train",
        help="train a model",
        usage="audiodenoise train (DATASET RUN_DIR | --speech DIR --noise DIR RUN_DIR | --config FILE RUN_DIR) "
        "[options]",
    )
    train.add_argument("paths", nargs="+", metavar="[DATASET] RUN_DIR", help="prepared dataset and run folder")
    train.add_argument(
        "--config",
        metavar="FILE",
        help="a JSON or TOML run config (as RUN_DIR/config.json records it); options given here override it",
    )
    add_options(train, RunConfig, "run", skip=("version", "dataset", "model", "train", "mixing", "split", "spectral"))
    _add_corpus_options(train, split_seed=False)
    model_options, named = train.add_argument_group("model (the --architecture's settings)"), set()
    for network in ARCHITECTURES.values():
        add_options(model_options, network.config_class, "model", skip=named)
        named |= {field.name for field in fields(network.config_class)}
    add_options(train.add_argument_group("training"), TrainConfig, "train")
    train.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last")
    train.set_defaults(run=cmd_train)

    evaluation = commands.add_parser("evaluate", help="score systems on paired noisy and clean recordings")
    evaluation.add_argument("--noisy", help="folder (or file) of noisy recordings, matched to --clean by name")
    evaluation.add_argument("--clean", help="folder (or file) of the clean references")
    evaluation.add_argument(
        "--pairs", help="CSV with columns noisy,clean[,snr_db], or id[,snr_db] with noisy/ and clean/ beside it"
    )
    evaluation.add_argument(
        "--systems",
        nargs="+",
        default=["noisy", "default"],
        metavar="SYSTEM",
        help="noisy, a bundled model or checkpoint folder, noisereduce-stationary, noisereduce-nonstationary, "
        "rnnoise, deepfilternet3 (default: noisy default)",
    )
    evaluation.add_argument("-o", "--output", help="report folder: scores.csv, report.json, report.md, plots")
    evaluation.add_argument("--threads", type=_positive_int, default=1, help="CPU threads for every system")
    evaluation.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        metavar="N",
        help="worker processes sharing out the pairs, each running every system at --threads: every system is "
        "timed on the same workers (the report says how many)",
    )
    _add_engine_option(evaluation, "our models")
    evaluation.add_argument("--max-files", type=_positive_int, default=None, help="only the first N pairs")
    evaluation.set_defaults(run=cmd_evaluate)

    serve = commands.add_parser("serve", help="HTTP API and web page for denoising")
    serve.add_argument(
        "--model",
        nargs="+",
        action="extend",
        metavar="NAME_OR_FOLDER",
        help="models offered (repeatable); the first is the default (default: the bundled default)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    serve.add_argument("--port", type=_port, default=8000, help="0 picks a free port")
    add_options(serve, Limits, "limits")
    serve.add_argument(
        "--allowed-host", action="append", default=[], metavar="NAME", help="another Host name to answer to"
    )
    serve.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN", help="a site that may POST, e.g. https://a.org"
    )
    serve.add_argument(
        "--threads", type=_positive_int, default=None, help="CPU threads per worker (default: cores / workers)"
    )
    _add_engine_option(serve, "the models")
    serve.set_defaults(run=cmd_serve)

    export = commands.add_parser("export", help="write a model as one self-describing ONNX file")
    export.add_argument("--model", default="default", help="bundled model name or checkpoint folder")
    export.add_argument("-o", "--output", required=True, help="file to write, e.g. model.onnx")
    export.set_defaults(run=cmd_export)

    models = commands.add_parser("models", help="list the bundled models")
    models.set_defaults(run=cmd_models)
    for command in commands.choices.values():
        _show_defaults(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as error:
        print(f"audiodenoise: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("audiodenoise: interrupted", file=sys.stderr)
        return 130
