"""Synthetic voices for training, made offline and reproducibly by espeak-ng, festival and flite.

Each voice is a speaker folder of its own, OUTPUT/<engine>-<voice>/<n>.flac at 22050 Hz, the plain layout that
`audiodenoise train --voices OUTPUT` reads. Utterances vary in rate and (espeak-ng, flite) pitch around each
voice's own. Texts come from installed packages: English sentences from /usr/share/common-licenses, and for other
languages the translated messages of installed programs (/usr/share/locale/LANG/LC_MESSAGES/*.mo).

Never used, reserved for evaluation: festvox-ru (msu_ru_nsh_clunits), festvox-us-slt-hts, and flite's slt voice
(the same speaker). A missing engine or voice is skipped with one line naming the Debian package to install.

    python scripts/synthesize_voices.py -o runs/voices --utterances 3000
"""

from __future__ import annotations

import argparse
import gettext
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

RATE = 22050
RESERVED = {"msu_ru_nsh_clunits", "us_slt_hts", "slt"}
ESPEAK_LANGUAGES = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "de",
    "fr",
    "es",
    "it",
    "pt",
    "nl",
    "pl",
    "cs",
    "sv",
    "da",
    "fi",
    "hu",
    "ro",
    "tr",
    "uk",
    "ca",
    "el",
    "ru",
)
ESPEAK_VARIANTS = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "klatt",
    "klatt2",
    "klatt3",
    "croak",
    "Andy",
    "Annie",
    "Denis",
    "edward",
    "grandma",
    "grandpa",
    "linda",
    "max",
)
# festival voice -> (language of its texts, Debian package)
FESTIVAL_VOICES = {
    "kal_diphone": ("en", "festvox-kallpc16k"),
    "ked_diphone": ("en", "festvox-kdlpc16k"),
    "lp_diphone": ("it", "festvox-italp16k"),
    "pc_diphone": ("it", "festvox-itapc16k"),
    "czech_dita": ("cs", "festvox-czech-dita"),
    "czech_machac": ("cs", "festvox-czech-machac"),
    "czech_ph": ("cs", "festvox-czech-ph"),
    "suo_fi_lj_diphone": ("fi", "festvox-suopuhe-lj"),
    "hy_fi_mv_diphone": ("fi", "festvox-suopuhe-mv"),
}
FLITE_VOICES = ("kal", "kal16", "awb", "rms")
WORDS = (5, 30)  # words per utterance
PLACEHOLDER = re.compile(r"%[-#0-9.]*[a-zA-Z]|\{[^}]*\}|<[^>]*>|[_&\\]")


@dataclass(frozen=True)
class Voice:
    engine: str
    name: str  # the engine's voice (espeak-ng: language+variant)
    language: str
    pitch: int  # espeak-ng 0-99, flite mean F0 in Hz; 0: the voice's own

    @property
    def speaker(self) -> str:
        return f"{self.engine}-{self.name.replace('+', '-')}" + (f"-p{self.pitch}" if self.pitch else "")


def english_sentences() -> list[str]:
    """Sentences of the licence texts, and the English originals of the installed programs' messages."""
    text = " ".join(p.read_text(errors="ignore") for p in sorted(Path("/usr/share/common-licenses").glob("*")))
    licences = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    return _sentences(licences + [original for original, _ in _messages("de")])


def translated_sentences(language: str) -> list[str]:
    """Translated messages of the installed programs in ``language``."""
    return _sentences([translation for _, translation in _messages(language)])


def _messages(language: str) -> list[tuple[str, str]]:
    """(original, translation) of every message in the gettext catalogs of ``language``."""
    pairs = []
    for catalog in sorted(Path(f"/usr/share/locale/{language}/LC_MESSAGES").glob("*.mo")):
        try:
            with catalog.open("rb") as handle:
                entries = gettext.GNUTranslations(handle)._catalog.items()  # the standard library's parsed catalog
        except (OSError, UnicodeDecodeError):
            continue
        pairs += [(k, v) for k, v in entries if isinstance(k, str) and isinstance(v, str)]
    return pairs


def _sentences(candidates: list[str]) -> list[str]:
    """Prose only: a few words or more, mostly letters, no placeholders, markup or long numbers."""
    found = set()
    for candidate in candidates:
        text = " ".join(PLACEHOLDER.sub(" ", candidate).split())
        letters = sum(c.isalpha() or c == " " for c in text)
        if WORDS[0] <= len(text.split()) <= WORDS[1] and letters >= 0.9 * len(text) and text[0].isalpha():
            found.add(text)
    return sorted(found)


def _missing(command: str, package: str) -> bool:
    if shutil.which(command):
        return False
    print(f"skipped {command}: not installed (apt-get install {package})", file=sys.stderr)
    return True


def voices(rng: np.random.Generator, espeak_count: int) -> list[Voice]:
    found = []
    if not _missing("espeak-ng", "espeak-ng"):
        pairs = [(lang, variant) for lang in ESPEAK_LANGUAGES for variant in ESPEAK_VARIANTS]
        for index in rng.choice(len(pairs), size=min(espeak_count, len(pairs)), replace=False):
            lang, variant = pairs[index]
            found.append(Voice("espeak", f"{lang}+{variant}", lang.split("-")[0], int(rng.integers(25, 75))))
    if not _missing("text2wave", "festival"):
        installed = {p.name for p in Path("/usr/share/festival/voices").glob("*/*")}
        for name, (language, package) in FESTIVAL_VOICES.items():
            if name in installed:
                found.append(Voice("festival", name, language, 0))
            else:
                print(f"skipped festival voice {name}: not installed (apt-get install {package})", file=sys.stderr)
    if not _missing("flite", "flite"):
        found += [Voice("flite", name, "en", int(rng.integers(85, 180))) for name in FLITE_VOICES]
    return [v for v in found if v.name not in RESERVED]


def synthesize(voice: Voice, text: str, rate: float, target: Path) -> None:
    """``text`` spoken by ``voice`` at ``rate`` times its usual speed into ``target`` (a WAV file)."""
    if voice.engine == "espeak":
        command = ["espeak-ng", "-v", voice.name, "-s", str(round(175 * rate)), "-p", str(voice.pitch)]
        command += ["-w", str(target), text]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    elif voice.engine == "festival":
        script = target.with_suffix(".txt")
        script.write_text(
            text, encoding="latin-1" if voice.language in ("cs", "fi", "it") else "utf-8", errors="ignore"
        )
        command = [
            "text2wave",
            "-eval",
            f"(voice_{voice.name})",
            "-eval",
            f"(Parameter.set 'Duration_Stretch {1 / rate:.3f})",
        ]
        subprocess.run(command + ["-o", str(target), str(script)], check=True, capture_output=True, timeout=120)
    else:
        command = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={1 / rate:.3f}"]
        command += ["--setf", f"int_f0_target_mean={voice.pitch}", "-t", text, "-o", str(target)]
        subprocess.run(command, check=True, capture_output=True, timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", required=True, help="folder of speaker folders to write (git-ignored)")
    parser.add_argument("--utterances", type=int, default=3000, help="utterances in all")
    parser.add_argument("--espeak-voices", type=int, default=150, help="espeak-ng language+variant voices")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    chosen = voices(rng, args.espeak_voices)
    if not chosen:
        print("no speech synthesizer is installed (apt-get install espeak-ng festival flite)", file=sys.stderr)
        return 2
    texts = {language: translated_sentences(language) for language in {v.language for v in chosen} - {"en"}}
    texts["en"] = english_sentences()
    output = Path(args.output)
    made, failed = 0, 0
    with tempfile.TemporaryDirectory() as scratch:
        for number in range(args.utterances):
            voice = chosen[number % len(chosen)]
            sentences = texts.get(voice.language) or texts["en"]
            text = sentences[int(rng.integers(len(sentences)))]
            speed = float(rng.uniform(0.8, 1.25))
            target = output / voice.speaker / f"{number:05d}.flac"
            if target.is_file():
                made += 1
                continue
            wav = Path(scratch) / "utterance.wav"
            try:
                synthesize(voice, text, speed, wav)
                audio, rate = sf.read(wav, dtype="float32", always_2d=True)
            except (subprocess.SubprocessError, OSError, RuntimeError) as error:
                failed += 1
                print(f"{voice.speaker}: failed ({str(error).splitlines()[0][:120]})", file=sys.stderr)
                continue
            audio = soxr.resample(audio.mean(axis=1), rate, RATE) if rate != RATE else audio.mean(axis=1)
            if len(audio) < RATE // 2 or np.abs(audio).max() < 1e-3:
                failed += 1
                continue
            audio *= 0.9 / max(0.9, float(np.abs(audio).max()))
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.partial")
            sf.write(partial, audio, RATE, format="FLAC")
            partial.rename(target)
            made += 1
    speakers = len({path.parent for path in output.glob("*/*.flac")})
    print(f"{output}: {made} utterances from {speakers} voices ({failed} failed or silent)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
