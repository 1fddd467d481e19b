import sys; sys.path.insert(0, "tests")
from test_cli import *
def test_dbg(capsys, tmp_path, model):
    write_wav(tmp_path / "in" / "a.wav", subtype="PCM_16")
    code, out, err = run(capsys, str(tmp_path / "in" / "*.wav"), "-o", tmp_path / "out", *model)
    print(code, out, err, sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")), file=sys.__stderr__)
