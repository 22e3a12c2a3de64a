"""The README's Python example (the ```python block that imports autoscale) runs as written, and
plots."""
import os
import re


def test_readme_example_runs(tmp_path, capsys, monkeypatch):
    with open(os.environ["README"]) as f:
        blocks = re.findall(r"^```python\n(.*?)^```$", f.read(), re.S | re.M)
    blocks = [b for b in blocks if "import autoscale" in b]
    assert len(blocks) == 1, "the README has one Python example of the module"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert "default:" in out and "stable 5 min:" in out
    assert (tmp_path / "compare.png").stat().st_size > 10_000
