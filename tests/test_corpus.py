"""Each corpus reader on a small tree in the exact layout its corpus is distributed in."""

import json

import numpy as np
import pytest
import soundfile as sf

from audiodenoise.cli import main
from audiodenoise.data.corpus import CorpusError, detect_format, read_corpus


def tone(path, seconds=0.5, rate=16000, format=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.1 * np.sin(2 * np.pi * 300 * t), rate, format=format)
    return path


def common_voice(root, header="client_id\tpath\tsentence\tup_votes"):
    (root / "clips").mkdir(parents=True)
    rows = [("spk_a", "common_voice_xx_1.mp3"), ("spk_a", "common_voice_xx_2.mp3"), ("spk_b", "common_voice_xx_3.mp3")]
    for _, name in rows:
        tone(root / "clips" / name, format="MP3")
    lines = [header] + [f"{client}\t{name}\tHello there.\t2" for client, name in rows]
    (root / "validated.tsv").write_text("\n".join(lines) + "\n")
    (root / "train.tsv").write_text("\n".join(lines[:2]) + "\n")  # overlaps validated.tsv
    return root


def test_common_voice_reads_clips_with_client_id_speakers(tmp_path):
    root = common_voice(tmp_path / "cv-corpus" / "xx")
    assert detect_format(root) == "commonvoice"
    files = read_corpus(root)
    assert [(f.path.name, f.group) for f in files] == [
        ("common_voice_xx_1.mp3", "spk_a"),
        ("common_voice_xx_2.mp3", "spk_a"),
        ("common_voice_xx_3.mp3", "spk_b"),
    ]


def test_common_voice_table_without_required_columns_is_a_clear_error(tmp_path):
    root = common_voice(tmp_path / "xx", header="client_id\tfilename\tsentence\tup_votes")
    with pytest.raises(CorpusError, match="missing column.*path"):
        read_corpus(root)


def test_voxceleb_speakers_are_id_folders_and_undecodable_m4a_is_skipped_once(tmp_path, capsys):
    root = tmp_path / "vox"
    tone(root / "wav" / "id10001" / "1zcIwhmdeo4" / "00001.wav")
    tone(root / "wav" / "id10002" / "7w0IBEWc9Qw" / "00003.wav")
    (root / "aac" / "id00012" / "21Uxsk56VDQ").mkdir(parents=True)
    for i in range(2):
        (root / "aac" / "id00012" / "21Uxsk56VDQ" / f"0000{i}.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A ")
    assert detect_format(root) == "voxceleb"
    files = read_corpus(root)  # the m4a stand-ins hold no decodable AAC
    assert capsys.readouterr().err.count("m4a") == 1
    assert {(f.path.name, f.group) for f in files} == {
        ("00001.wav", "id10001"),
        ("00003.wav", "id10002"),
    }


def test_urbansound8k_keeps_classes_and_folds(tmp_path):
    root = tmp_path / "UrbanSound8K"
    rows = [("100032-3-0-0.wav", 5, 3, "dog_bark"), ("100263-2-0-117.wav", 10, 2, "children_playing")]
    for name, fold, _, _ in rows:
        tone(root / "audio" / f"fold{fold}" / name, rate=44100)
    lines = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    lines += [f"{name},1,0.0,0.5,1,{fold},{cid},{label}" for name, fold, cid, label in rows]
    (root / "metadata").mkdir()
    (root / "metadata" / "UrbanSound8K.csv").write_text("\n".join(lines) + "\n")
    assert detect_format(root) == "urbansound8k"
    files = read_corpus(root)
    assert [(f.path.name, f.group, f.fold) for f in files] == [
        ("100032-3-0-0.wav", "dog_bark", "fold5"),
        ("100263-2-0-117.wav", "children_playing", "fold10"),
    ]


def test_plain_folders_and_forced_formats(tmp_path):
    tone(tmp_path / "speech" / "alice" / "a.flac")
    tone(tmp_path / "speech" / "loose.wav")
    assert detect_format(tmp_path / "speech") == "plain"
    assert sorted((f.path.name, f.group) for f in read_corpus(tmp_path / "speech")) == [
        ("a.flac", "alice"),
        ("loose.wav", ""),
    ]
    with pytest.raises(CorpusError, match="not a voxceleb corpus"):
        read_corpus(tmp_path / "speech" / "alice", "voxceleb")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("no audio here")
    with pytest.raises(CorpusError, match="no audio files"):
        read_corpus(tmp_path / "text")


def test_prepare_refuses_an_empty_or_unreadable_corpus_with_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    tone(tmp_path / "noise" / "hiss" / "n.wav")
    code = main(
        [
            "prepare",
            "--speech",
            str(tmp_path / "empty"),
            "--noise",
            str(tmp_path / "noise"),
            "-o",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "no audio files" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_prepare_splits_urbansound8k_noise_by_fold(tmp_path):
    for speaker in ("alice", "bob"):
        tone(tmp_path / "speech" / speaker / "a.wav", seconds=1.0)
    root = tmp_path / "UrbanSound8K"
    lines = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    for fold in (1, 2, 10):
        tone(root / "audio" / f"fold{fold}" / f"{fold}-1-0-0.wav", rate=44100)
        lines.append(f"{fold}-1-0-0.wav,1,0.0,0.5,1,{fold},1,car_horn")
    (root / "metadata").mkdir()
    (root / "metadata" / "UrbanSound8K.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "data"
    argv = ["prepare", "--speech", str(tmp_path / "speech"), "--noise", str(root), "-o", str(out), "--workers", "1"]
    assert main(argv + ["--val-fraction", "0.5"]) == 0
    splits = json.loads((out / "manifest.json").read_text())["splits"]
    assert splits["val"]["noise_files"] == ["audio/fold10/10-1-0-0.wav"]
    assert len(splits["train"]["noise_files"]) == 2


@pytest.mark.parametrize("format", ["commonvoice", "voxceleb", "urbansound8k"])
def test_a_forced_format_that_does_not_match_the_layout_is_one_line_exit_2(tmp_path, capsys, format):
    tone(tmp_path / "speech" / "alice" / "a.wav")
    tone(tmp_path / "noise" / "hiss" / "n.wav")
    argv = ["prepare", "--speech", str(tmp_path / "speech"), "--noise", str(tmp_path / "noise")]
    assert main(argv + ["-o", str(tmp_path / "out"), "--speech-format", format]) == 2
    err = capsys.readouterr().err
    assert f"not a {format} corpus" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
