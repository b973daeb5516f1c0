"""The README's usage example runs as written; the README keeps exactly two set-up commands."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_usage_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README has no python example"
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 12
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("4 ['clip/auprc_macro', 'clip/auroc_macro', 'clip/balanced_acc']")


def test_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Set-up: the two commands.*?```bash\n(.*?)```", text, re.S).group(1)
    cmds = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert cmds == ["make demo", "make test"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_epic_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "ActionMetrics" in b]
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("['action/mean_class_recall', 'action/top1', 'action/top5'] 1.0")


def test_explain_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "explain(" in b]
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.strip()
    assert out == "gradcam block3 (2, 8, 32, 32) (N, C, T, H, W) -> grid t=8, h=8, w=8"
    assert f"prints `{out}`" in text


def test_youtube8m_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "YouTube8MMetrics" in b]
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.strip() == "['gap', 'hit_at_1', 'map', 'num_videos', 'perr'] 64"
